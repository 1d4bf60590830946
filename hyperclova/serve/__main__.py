"""Serve a trained model: an OpenAI-compatible API with continuous batching, and the Studio
playground in the browser (docs/serve.md).

    python -m hyperclova.serve --checkpoint runs/demo/checkpoints
    # Studio: http://127.0.0.1:8000/    API: http://127.0.0.1:8000/v1 (the `openai` client works)
    python -m hyperclova.serve --checkpoint runs/1.3b/checkpoints \
        --adapter nsmc=runs/tune/nsmc_ptuning/checkpoints --adapter runs/tune/ynat_lora/checkpoints
    # requests choose the base or an adapter with "model": "nsmc", "ynat_lora", ...
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hyperclova.errors import UserError, cli_main

API_KEY_ENV = "HYPERCLOVA_API_KEY"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m hyperclova.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint",
                   help="a run's checkpoint dir, a step dir, a to-hf export dir or a consolidate "
                        ".safetensors file (with --adapter: the DCP base the adapters were tuned "
                        "on; default: the base the first adapter names)")
    p.add_argument("--adapter", action="append", default=[], metavar="[NAME=]DIR",
                   help="also serve a tuned checkpoint (python -m hyperclova.tune) under NAME "
                        "(default: its run directory's name); repeatable")
    p.add_argument("--tokenizer", help="tokenizer dir (default: the checkpoint's data.tokenizer)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="auto: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--served-model-name", help="the model id of the API (default: from the path)")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together (KV slots)")
    p.add_argument("--max-queue", type=int, default=256, help="waiting sequences before 429")
    p.add_argument("--max-model-len", type=int, help="context per sequence (default: the model's)")
    p.add_argument("--prefill-tokens", type=int, default=4096,
                   help="prompt tokens admitted into one iteration")
    p.add_argument("--scheduler", default="continuous", choices=("continuous", "static"),
                   help="static: the baseline that decodes a full batch to its end")
    p.add_argument("--max-tokens", type=int, default=1024, help="max_tokens is clamped to this")
    p.add_argument("--max-n", type=int, default=8, help="n is clamped to this")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger requests get 413")
    p.add_argument("--api-key", action="append", default=[],
                   help=f"require 'Authorization: Bearer KEY' on the API (repeatable; or set "
                        f"{API_KEY_ENV}, comma-separated)")
    p.add_argument("--filter-config", default="default",
                   help="filter YAML (docs/serve.md), 'default' (banned words + PII masking) or 'none'")
    p.add_argument("--knowledge", nargs="+", help="JSONL/text documents for retrieval (`retrieve: k`)")
    p.add_argument("--knowledge-json-keys", nargs="+", default=["text"])
    p.add_argument("--chat-template", help="Jinja chat template file (default: docs/serve.md)")
    p.add_argument("--chat-stop", action="append", help="stop string of the chat template (repeatable)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug", "trace"))
    args = p.parse_args(argv)
    for flag in ("max_batch", "max_queue", "max_tokens", "max_n", "max_body_bytes", "prefill_tokens"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if not 0 <= args.port < 65536:
        raise UserError(f"--port must be in [0, 65535], got {args.port}")
    if not args.checkpoint and not args.adapter:
        raise UserError("give --checkpoint (and optionally --adapter ...)")
    return args


def model_name(path: str) -> str:
    p = Path(path).resolve()
    if p.name == "checkpoints" or p.name.startswith("step_"):
        p = p.parent if p.name == "checkpoints" else p.parent.parent
    return p.stem or "hyperclova"


def build_server(args):
    import torch

    from hyperclova.generate import load_model
    from hyperclova.serve.batching import BatchEngine
    from hyperclova.serve.chat import ChatTemplate
    from hyperclova.serve.filters import FilterConfig, Filters
    from hyperclova.serve.metrics import Metrics
    from hyperclova.serve.server import Limits, Server, Variant
    from hyperclova.tokenizer import load_tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: this torch build or machine has no CUDA device")
    filters = None
    if args.filter_config != "none":
        cfg = FilterConfig() if args.filter_config == "default" else FilterConfig.load(args.filter_config)
        filters = Filters(cfg)
    chat = ChatTemplate.from_file(args.chat_template, args.chat_stop)
    knowledge = None
    if args.knowledge:
        from hyperclova.serve.knowledge import KnowledgeBase

        knowledge, summary = KnowledgeBase.from_paths(args.knowledge, tuple(args.knowledge_json_keys))
        print(f"knowledge: {len(knowledge.passages)} passages; {summary}", flush=True)
    adapters = [_adapter_arg(a) for a in args.adapter]
    checkpoint = args.checkpoint or str(adapters[0][1].cfg.tune.base)
    model, cfg = load_model(checkpoint, device)
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    tok_dir = args.tokenizer or cfg.data.tokenizer
    if not tok_dir:
        raise UserError("the checkpoint's config names no data.tokenizer: pass --tokenizer DIR")
    tok = load_tokenizer(tok_dir)
    tuned = load_adapters(model, checkpoint, adapters, device, tok) if adapters else []
    model = model.to(dtype)
    if tok.vocab_size > model.cfg.vocab_size:
        raise UserError(f"tokenizer {tok_dir} has {tok.vocab_size} ids but the model only "
                        f"{model.cfg.vocab_size}: not the tokenizer this model was trained with")
    if args.max_model_len is not None and not 2 <= args.max_model_len <= model.cfg.seq_len:
        raise UserError(f"--max-model-len must be in [2, {model.cfg.seq_len}] (the model's context)")
    def make_engine(m):
        return BatchEngine(m, tok.vocab_size, max_batch=args.max_batch, max_queue=args.max_queue,
                           max_len=args.max_model_len, prefill_tokens=args.prefill_tokens,
                           policy=args.scheduler)

    engine = make_engine(model)
    variants = []
    for name, kind, tuned_tok, wrap, tuned_model in tuned:
        own = engine if tuned_model is None else make_engine(tuned_model.to(dtype))
        variants.append(Variant(name, own, tuned_tok, wrap, kind))
    keys = list(args.api_key) + [k for k in os.environ.get(API_KEY_ENV, "").split(",") if k]
    limits = Limits(max_tokens=args.max_tokens, max_n=args.max_n, max_body_bytes=args.max_body_bytes)
    engines = list({id(e): e for e in [engine] + [v.engine for v in variants]}.values())
    server = Server(tok, engine, args.served_model_name or model_name(checkpoint), limits,
                    filters=filters, knowledge=knowledge, chat=chat, metrics=Metrics(engines),
                    api_keys=tuple(keys), adapters=variants)
    if len(server.variants) != 1 + len(variants):
        raise UserError(f"two served models share a name: {[v.name for v in variants]}; name "
                        "adapters with --adapter NAME=DIR")
    return server, device, dtype


def _adapter_arg(arg: str):
    from hyperclova.tune.adapters import open_adapter

    name, sep, path = arg.partition("=")
    if not sep:
        name, path = "", arg
    adapter = open_adapter(path)
    return name or model_name(path), adapter


def load_adapters(model, checkpoint: str, adapters: list, device: str, tok) -> list[tuple]:
    """(name, kind, tokenizer, prompt wrapper, own model or None) per adapter. P-tuning adapters
    share the base model: their stored prompt tables are stacked into its input adapter, each
    adapter's virtual ids placed after the previous one's. LoRA adapters are merged into a copy
    of the base each (their own engine); fully fine-tuned checkpoints are whole models."""
    import torch

    from hyperclova.generate import load_model
    from hyperclova.tune.adapters import adapter_tokenizer, prompt_table, resolve_base
    from hyperclova.tune.lora import merge_lora_
    from hyperclova.tune.ptuning import PromptTokenizer, add_stored_prompts, n_virtual, wrap_template

    out, tables, rows = [], [], 0
    for name, ad in adapters:
        base = resolve_base(ad, checkpoint)  # refuses an adapter tuned on another base
        if ad.method == "ptuning":
            table = prompt_table(ad)
            ptok = PromptTokenizer(tok, model.cfg.vocab_size, n_virtual(ad.cfg.tune.ptuning), rows)
            out.append((name, "ptuning", ptok, lambda t, c=ad.cfg.tune.ptuning: wrap_template(t, c), None))
            tables.append(table)
            rows += table.size(0)
        else:
            tuned, _ = load_model(base, device, ad)
            if ad.method == "lora":
                merge_lora_(tuned)
            out.append((name, ad.method, adapter_tokenizer(ad.cfg, tok), lambda t: t, tuned))
    if tables:
        add_stored_prompts(model, torch.cat(tables).to(device))
    return out


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    level = "DEBUG" if args.log_level == "trace" else args.log_level.upper()  # trace: uvicorn's own
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    server, device, dtype = build_server(args)
    import uvicorn

    from hyperclova.serve.app import create_app

    base = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}"
    print(f"model {server.model_name!r} on {device} ({str(dtype).replace('torch.', '')}), context "
          f"{server.max_len}, {args.max_batch} slots, scheduler {args.scheduler}", flush=True)
    for v in list(server.variants.values())[1:]:
        print(f"adapter {v.name!r} ({v.kind})", flush=True)
    print(f"Studio playground: {base}/\nOpenAI-compatible API: {base}/v1"
          + ("  (API key required)" if server.api_keys else ""), flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not server.api_keys:
        print(f"warning: listening on {args.host} without an API key; anyone who can reach it "
              f"can use the model (--api-key)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
