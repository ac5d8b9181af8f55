"""One lock for building model weights, because transformers' `from_pretrained` is not thread-safe.

While it runs, transformers swaps torch's `nn.init` functions and its own `init_weights`/`tie_weights`
for no-ops, globally (transformers/initialization.py), and puts them back afterwards. Two loads in two
threads can leave the no-ops in place for good (untied, meta LM heads), and a module built meanwhile
in any thread skips its initialisation (an adapter whose W_up is not zero). The studio loads bases in
request threads while the job thread loads its own, so every load and every adapter build holds this.
"""

import threading

MODEL_BUILD_LOCK = threading.RLock()
