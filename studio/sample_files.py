"""The bundled sample files: the only server files a visitor may train on, besides their own uploads."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLES = {
    "Support routing (classification, 480 rows)": ("support_routing.csv", "classification"),
    "Orders replies (instruction, 140 rows)": ("orders_sft.csv", "instruction"),
    "Tech support replies (instruction, 140 rows)": ("tech_support_sft.csv", "instruction"),
    "Billing replies (instruction, 140 rows)": ("billing_sft.csv", "instruction"),
}
