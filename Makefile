# Every target sets up .venv itself when needed (fresh machine: just run `make demo` or `make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, from PyTorch's CPU index (PyPI's default Linux wheel would pull in CUDA
# libraries the tests never use); GPU users set TORCH_SPEC to their own build (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export OMP_NUM_THREADS ?= 1
DEMO_DIR ?= demo_out

.PHONY: venv demo eval-demo tune-demo test test-slow bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --extra-index-url "$(TORCH_INDEX)" "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,serve,eval,mpi,ray]"
	touch $@

demo: venv
	$(PY) -m hyperclova.demo --out $(DEMO_DIR)

# The demo's checkpoint, made by `make demo` when missing (eval-demo and tune-demo start from it).
DEMO_CKPT := $(DEMO_DIR)/run/checkpoints/latest
$(DEMO_CKPT): | venv
	$(PY) -m hyperclova.demo --out $(DEMO_DIR)

# Few-shot evaluation of the demo checkpoint on topic/sentiment files built from held-out
# generated documents.
eval-demo: venv $(DEMO_CKPT)
	$(PY) -m hyperclova.eval.demo --checkpoint $(DEMO_DIR)/run/checkpoints --out $(DEMO_DIR)/eval

# P-tuning, LoRA and full fine-tuning of the demo checkpoint against its few-shot score on the
# evaluation demo's tasks, printed as a Table 4-shaped comparison (docs/tune.md).
tune-demo: venv $(DEMO_CKPT)
	$(PY) -m hyperclova.tune.demo --checkpoint $(DEMO_DIR)/run/checkpoints --out $(DEMO_DIR)/tune

test: venv
	$(PY) -m pytest -q tests

test-slow: venv
	$(PY) -m pytest -q -m slow tests/distributed tests/eval/test_parallel.py

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) runs build *.egg-info
