"""Regenerate the customer-service samples: `python sample_data/make_samples.py`.

Written for Adapter Studio (no public dataset's sentences): templates of our own with product names,
order numbers and amounts drawn from a seeded generator, so the files are varied and reproducible.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRODUCTS = [
    "wireless earbuds",
    "smart speaker",
    "fitness watch",
    "robot vacuum",
    "27-inch monitor",
    "mechanical keyboard",
    "e-reader",
    "smart thermostat",
    "power bank",
    "security camera",
    "coffee grinder",
    "gaming mouse",
    "noise-cancelling headphones",
    "video doorbell",
    "tablet",
    "air purifier",
    "webcam",
    "electric toothbrush",
]
OPEN = ["", "", "Hi, ", "Hello, ", "Hey there. ", "Good morning. ", "Hi team, ", "Quick question: "]
CLOSE = ["", "", "", " Thanks.", " Please help.", " Thanks in advance!", " Can you sort this out?", " Cheers."]

ORDERS = [
    "Where is my order {order}? It still says processing.",
    "My {product} was supposed to arrive {when} and it hasn't shown up.",
    "The tracking for order {order} hasn't updated in {days} days.",
    "Can I change the delivery address on order {order}? I'm moving this week.",
    "I received a {other} instead of the {product} I ordered.",
    "The box arrived but the {product} was missing from it.",
    "How do I return the {product}? It doesn't suit me.",
    "I'd like to exchange my {product} for a different colour.",
    "Please cancel order {order}, I ordered it by mistake.",
    "The courier left my parcel at the wrong house.",
    "My {product} arrived with a cracked case, the parcel was crushed in transit.",
    "Can you tell me when order {order} will be dispatched?",
    "Is it possible to pick up my {product} from a store instead of delivery?",
    "I only got one of the two items in order {order}.",
    "The delivery driver said nobody was home but I was in all day. Where is my {product}?",
    "Do you deliver to Norway? I want to order a {product}.",
    "I sent the {product} back {days} days ago, has the return arrived?",
    "Can I add a second {product} to order {order} before it ships?",
    "The return label for my {product} won't print, can you email it again?",
    "My order {order} shows delivered but there's nothing here.",
]
TECH = [
    "My {product} won't turn on even after charging overnight.",
    "How do I pair the {product} with my phone over Bluetooth?",
    "The {product} keeps dropping off my wifi network.",
    "The companion app crashes every time I open the {product} settings.",
    "How do I update the firmware on my {product}?",
    "The battery on my {product} drains in about {hours} hours, is that normal?",
    "How do I factory reset the {product}?",
    "My {product} is making a buzzing noise since the last update.",
    "The {product} shows error code E{code} and then restarts.",
    "I can't get the {product} to connect to my laptop.",
    "The touch controls on my {product} stopped responding.",
    "Setup gets stuck at {percent}% when I install the {product}.",
    "The {product} is not detected by the app at all.",
    "Sound cuts out on my {product} every few minutes.",
    "How do I set up the {product} for the first time?",
    "My {product} gets very hot after {minutes} minutes of use.",
    "The screen on my {product} flickers when the brightness is low.",
    "After the update my {product} won't sync with the app any more.",
    "Is the {product} compatible with Android 12? It won't install.",
    "The {product} resets itself to default settings every night.",
]
BILLING = [
    "I was charged twice for order {order}.",
    "Can you send me a VAT invoice for my {product}?",
    "When will I get the refund for the {product} I returned?",
    "My card was declined at checkout but the money left my account.",
    "How do I change the card on my account?",
    "The discount code {promo} wasn't applied to my order.",
    "Why was I charged {amount} when the {product} was listed at a lower price?",
    "I need a copy of the invoice for order {order} for my expenses.",
    "I cancelled order {order} but I still see the charge on my statement.",
    "Can I pay for the {product} in instalments?",
    "There's a charge of {amount} on my statement that I don't recognise.",
    "The price of the {product} dropped a day after I bought it, can I get the difference back?",
    "I'm still waiting for my refund of {amount}, it's been {days} days.",
    "Please update the billing address on my invoices.",
    "Do you accept PayPal for the {product}?",
    "My subscription renewed and charged {amount} without warning.",
    "The invoice for order {order} has the wrong company name.",
    "I paid for express shipping but it came standard, I want that fee refunded.",
    "Can you split the payment for order {order} across two cards?",
    "My bank says the refund for order {order} was never sent.",
]
# Hard cases: words of one department, intent of another. Label is the department that acts.
HARD = [
    ("My {product} arrived {days} days late and I want a refund for it.", "billing"),
    ("The order was late so I'd like my shipping fee refunded.", "billing"),
    ("I returned the broken {product} but the refund hasn't reached my card.", "billing"),
    ("The {product} stopped working after a week, can I send it back for a new one?", "orders"),
    ("My {product} arrived dead on arrival, the box was soaking wet, I want a replacement sent.", "orders"),
    ("I was charged for order {order} but it never arrived, where is it?", "orders"),
    ("The {product} won't connect to wifi and I was billed for the setup service, can you help set it up?", "tech"),
    ("Since the update my {product} won't pair, do I need to return it?", "tech"),
    ("I want to cancel my order {order} and get my money back before it ships.", "orders"),
    ("The invoice says {product} but I haven't received anything yet.", "orders"),
    ("The app shows a payment error when I try to register my {product}, the device itself won't activate.", "tech"),
    ("I paid {amount} for a replacement {product} and that one won't turn on either.", "tech"),
]


def fill(template: str, rng: random.Random) -> str:
    product = rng.choice(PRODUCTS)
    return template.format(
        product=product,
        other=rng.choice([p for p in PRODUCTS if p != product]),
        order=f"#{rng.randint(100000, 999999)}",
        days=rng.randint(2, 21),
        hours=rng.randint(2, 9),
        minutes=rng.randint(5, 40),
        percent=rng.choice([40, 60, 75, 90, 99]),
        code=rng.randint(10, 99),
        amount=f"${rng.randint(9, 400)}.{rng.randint(0, 99):02d}",
        promo=rng.choice(["SPRING10", "WELCOME15", "VIP20"]),
        when=rng.choice(["yesterday", "on Monday", "last week", "three days ago", "by Friday"]),
    )


def message(template: str, rng: random.Random) -> str:
    text = rng.choice(OPEN) + fill(template, rng) + rng.choice(CLOSE)
    return text[0].upper() + text[1:]


def routing(rng: random.Random, per_label: int = 160) -> list[tuple[str, str]]:
    rows, seen = [], set()
    pools = {"orders": ORDERS, "tech": TECH, "billing": BILLING}
    hard = {label: [t for t, lab in HARD if lab == label] for label in pools}
    for label, pool in pools.items():
        count = 0
        while count < per_label:
            template = rng.choice(hard[label]) if rng.random() < 0.12 else rng.choice(pool)
            text = message(template, rng)
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
                count += 1
    rng.shuffle(rows)
    return rows


def pick(msg: str, bodies: list[tuple[tuple[str, ...], str]]) -> str:
    """The first body whose keywords occur in the message; the last one is the fallback."""
    low = msg.lower()
    return next((body for words, body in bodies if any(w in low for w in words)), bodies[-1][1])


def orders_reply(msg: str, rng: random.Random) -> str:
    ref = f"ORD-{rng.randint(10000, 99999)}"
    body = pick(
        msg,
        [
            (
                ("return", "exchange", "doesn't suit"),
                "I have opened a return for you and emailed a prepaid label; drop the parcel at any post office within 30 days.",
            ),
            (
                ("instead", "missing", "cracked", "only got one", "crushed"),
                "I have arranged a replacement to ship today by express delivery at no cost to you.",
            ),
            (
                ("cancel", "change the delivery", "add a second", "pick up", "deliver to"),
                "I have updated the order and our warehouse team will confirm the change by email today.",
            ),
            (
                (),
                "I have checked your order and asked the courier for an update; you will get a tracking email within 24 hours.",
            ),
        ],
    )
    return f"Hello from the Orders Desk! Reference {ref}. {body} Happy shopping, The Orders Desk."


def tech_reply(msg: str, rng: random.Random) -> str:
    ref = f"TS-{rng.randint(1000, 9999)}"
    steps = pick(
        msg,
        [
            (
                ("pair", "bluetooth", "sync", "app", "detected", "laptop", "compatible"),
                "1) Update the companion app. 2) Forget the device in Bluetooth settings. 3) Pair it again.",
            ),
            (
                ("wifi", "setup", "set up"),
                "1) Restart your router. 2) Move the device closer to it. 3) Run setup again from the app.",
            ),
            (
                ("firmware", "update", "error", "flicker", "resets", "buzzing", "factory reset"),
                "1) Open Settings > About. 2) Tap Check for updates. 3) Keep it plugged in until it restarts.",
            ),
            ((), "1) Hold the power button for 15 seconds. 2) Charge for 30 minutes. 3) Turn it on again."),
        ],
    )
    return f"Tech Support ticket {ref}. Please try these steps: {steps} Reply to this ticket if it persists. - Tech Support"


def billing_reply(msg: str, rng: random.Random) -> str:
    ref = f"BIL-{rng.randint(100000, 999999)}"
    body = pick(
        msg,
        [
            (("invoice", "vat"), "I have attached a corrected invoice to your account, under Orders > Invoices."),
            (
                ("twice", "don't recognise", "declined", "without warning", "still see the charge"),
                "I have checked the charge and removed the duplicate; your statement will update within 48 hours.",
            ),
            (
                ("change the card", "billing address", "paypal", "instalments", "split"),
                "I have updated your billing details; the next invoice will show the change.",
            ),
            ((), "I have reviewed the payment and issued a refund; it reaches your card in 3 to 5 working days."),
        ],
    )
    return f"Dear customer, thank you for contacting Billing (case {ref}). {body} Kind regards, the Billing Team."


def sft(pool: list[str], reply, rng: random.Random, n: int = 140) -> list[tuple[str, str]]:
    rows, seen = [], set()
    while len(rows) < n:
        text = message(rng.choice(pool), rng)
        if text not in seen:
            seen.add(text)
            rows.append((text, reply(text, rng)))
    return rows


# A rigid house style for a small file (issue 14): 80 pairs to train on, then 16 held-out prompts.
HOUSE_PROBLEMS = [
    "stopped working after {days} days",
    "won't charge any more",
    "arrived with a scratch across the front",
    "came with a dent in the side",
    "arrived without its charging cable",
    "came without the manual",
    "started making a rattling noise",
    "started switching itself off",
    "arrived with a cracked casing",
    "arrived with a part missing from the box",
    "started overheating after a few minutes",
    "started flashing a red light",
]
HOUSE_ACTIONS = [
    (("scratch", "dent", "cracked"), "a replacement ships today at no cost"),
    (("missing", "without"), "the missing part is posted first class today"),
    (("stopped", "charge", "switching"), "a repair is booked and a courier collects it tomorrow"),
    ((), "a technician will call you within 24 hours"),
]
HOUSE_SIGN_OFF = "Signed: the Repair Desk"
HOUSE_TRAIN, HOUSE_HELD_OUT = 80, 16


def house_reply(item: str, msg: str, rng: random.Random) -> str:
    """`Case #1234 | Item: <the item> | Action: <what we do> | Signed: the Repair Desk`."""
    action = pick(msg, HOUSE_ACTIONS)
    return f"Case #{rng.randint(1000, 9999)} | Item: {item} | Action: {action} | {HOUSE_SIGN_OFF}"


def house_style(rng: random.Random) -> list[tuple[str, str]]:
    """HOUSE_TRAIN training pairs, then HOUSE_HELD_OUT pairs whose prompts differ from every training one."""
    rows, seen = [], set()
    while len(rows) < HOUSE_TRAIN + HOUSE_HELD_OUT:
        item = rng.choice(PRODUCTS)
        problem = rng.choice(HOUSE_PROBLEMS).format(days=rng.randint(2, 30))
        opening = rng.choice(OPEN)
        mine = "my" if opening.endswith(", ") else "My"
        text = f"{opening}{mine} {item} {problem}.{rng.choice(CLOSE)}"
        if text not in seen:
            seen.add(text)
            rows.append((text, house_reply(item, text, rng)))
    return rows


def write(name: str, header: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    with open(HERE / name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def main() -> None:
    rng = random.Random(2026)
    write("support_routing.csv", ("text", "label"), routing(rng))
    write("orders_sft.csv", ("instruction", "response"), sft(ORDERS, orders_reply, rng))
    write("tech_support_sft.csv", ("instruction", "response"), sft(TECH, tech_reply, rng))
    write("billing_sft.csv", ("instruction", "response"), sft(BILLING, billing_reply, rng))
    # Its own generator, so the files above stay as they were.
    write("house_style_sft.csv", ("instruction", "response"), house_style(random.Random(14)))


if __name__ == "__main__":
    main()
