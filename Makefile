# T2V2T — the commands users type (README.md, "Commands"). `make help` lists them.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
FFMPEG_STAMP := .venv/.ffmpeg

# Every command finds the venv's programs first (ffmpeg/ffprobe when `make setup` linked them).
export PATH := $(CURDIR)/.venv/bin:$(PATH)

# Knobs (empty = the paper's recipe / the script's default).
DATASET ?= webvid
DATA ?=
SPLIT ?=
FRAMES ?=
FRAME_RULE ?=
WORKERS ?= 2
SCHEDULER ?=
SYNTHETIC ?=
ANNOTATIONS ?=
OUT ?=
DIR ?=
PRESET ?= base
INIT ?=
CKPT ?=
RUN ?=
ARGS ?=
RESUME ?=
SOURCES ?=
MIXING ?=
SHARDS ?=
FUSION ?= t2v2t
GPUS ?= 1
NNODES ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?= 127.0.0.1
MASTER_PORT ?= 29500

export INIT

# One process, or torchrun when GPUS>1 or NNODES>1 (c10d rendezvous on MASTER_ADDR:MASTER_PORT),
# through t2v2t/launch.py: it passes SIGTERM/SIGUSR1 on to every rank (docs/reliability.md).
# Either way the command follows as `-m t2v2t.<module>` (python -m, or torchrun's -m/--module).
ifeq ($(GPUS)$(NNODES),11)
LAUNCH := $(PY)
else
LAUNCH := $(PY) -m t2v2t.launch --nnodes $(NNODES) --node_rank $(NODE_RANK) --nproc_per_node $(GPUS) \
	--rdzv_backend c10d --rdzv_endpoint $(MASTER_ADDR):$(MASTER_PORT)
endif

opt = $(if $(2),$(1) $(2))
SHARD_OPTS = $(call opt,--data,$(DATA)) $(call opt,--out,$(OUT)) $(call opt,--split,$(SPLIT)) $(call opt,--frames,$(FRAMES)) \
	$(call opt,--workers,$(WORKERS)) $(call opt,--scheduler,$(SCHEDULER)) \
	$(if $(filter-out 0,$(SYNTHETIC)),--synthetic) $(call opt,--annotations,$(ANNOTATIONS)) \
	$(call opt,--frame-rule,$(FRAME_RULE)) \
	$(call opt,--samples-per-shard,$(SHARD_SIZE)) $(call opt,--shard-bytes,$(SHARD_BYTES)) \
	$(call opt,--window,$(WINDOW)) $(call opt,--mixing,$(MIXING)) $(call opt,--max-seconds,$(MAX_SECONDS))
TRAIN_OPTS = --preset $(PRESET) $(call opt,--ckpt,$(CKPT)) $(call opt,--run-dir,$(RUN)) \
	$(if $(RESUME),--resume) $(call opt,--sources,$(SOURCES)) $(ARGS)
EVAL_OPTS = --preset $(PRESET) $(call opt,--ckpt,$(CKPT)) $(call opt,--run-dir,$(RUN)) --fusion $(FUSION) \
	$(call opt,--shards,$(SHARDS)) $(ARGS)

.PHONY: help setup test test-slow lint format shards verify-shards pretrain finetune eval \
	finetune-msrvtt finetune-didemo finetune-anet eval-msrvtt eval-didemo eval-anet tune-fusion \
	ablation bench bench-gpu demo clean

help:  ## list the commands
	@grep -E '^[a-z -]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 20

setup: $(VENV_STAMP) $(FFMPEG_STAMP)  ## create .venv, install the project at constraints.txt's versions, ffmpeg (idempotent)

$(VENV_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	touch $@

$(FFMPEG_STAMP): $(VENV_STAMP) scripts/setup_ffmpeg.sh
	bash scripts/setup_ffmpeg.sh .venv
	touch $@

test: setup  ## the whole test suite (CI runs exactly this)
	$(PY) -m pytest -q -m "not slow" tests

test-slow: setup  ## heavier checks: the full-size pipeline, long runs
	$(PY) -m pytest -q -m slow tests

lint: setup  ## ruff lint + format check
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

shards: setup  ## build shards: DATASET=webvid|cc3m|msrvtt|didemo|anet|folder|vindlu|wds [DATA= OUT=shards|s3://... SPLIT= FRAMES= WORKERS= SCHEDULER= SYNTHETIC=1 ANNOTATIONS= SHARD_BYTES= SHARD_SIZE= WINDOW= MIXING=blocks|none MAX_SECONDS=]
	$(PY) -m t2v2t.shards --dataset $(DATASET) $(SHARD_OPTS)

verify-shards: setup  ## check a shard folder against its manifest: DIR=shards/webvid/train_4f|s3://... [WORKERS= SCHEDULER=]
	$(PY) -m t2v2t.verify_shards $(DIR) $(if $(filter command line environment,$(origin WORKERS)),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

pretrain: setup  ## pre-training, the paper's recipe [SOURCES=webvid PRESET=tiny GPUS= CKPT= RUN= RESUME=1 ARGS='k=v ...']
	$(LAUNCH) -m t2v2t.train --task pretrain $(TRAIN_OPTS)

finetune-msrvtt finetune-didemo finetune-anet: finetune-%: setup  ## fine-tuning from CKPT= (default runs/pretrain/last.pt)
	$(LAUNCH) -m t2v2t.train --task finetune-$* $(TRAIN_OPTS)

finetune: setup  ## fine-tuning on DATASET=folder|vindlu (or msrvtt|didemo|anet): shards/<d>/train_12f, eval on test_12f
	$(LAUNCH) -m t2v2t.train --task finetune-$(DATASET) $(TRAIN_OPTS)

eval-msrvtt eval-didemo eval-anet: eval-%: setup  ## retrieval evaluation [FUSION=t2v2t|naive|none CKPT= PRESET= SHARDS=]
	$(LAUNCH) -m t2v2t.eval --dataset $* $(EVAL_OPTS)

eval: setup  ## retrieval evaluation of DATASET=folder|vindlu|... on shards/<d>/test_12f [SHARDS= CKPT= FUSION=]
	$(LAUNCH) -m t2v2t.eval --dataset $(DATASET) $(EVAL_OPTS)

ablation: setup  ## the three fusions on one checkpoint per dataset, the paper's ablation table
	$(PY) -m t2v2t.ablation --preset $(PRESET) $(call opt,--run,$(RUN)) $(ARGS)

tune-fusion: setup  ## post-hoc methods' parameters on held-out train captions -> <ckpt dir>/fusion_params.json [DATASET= CKPT= PRESET= SHARDS=]
	$(PY) -m t2v2t.tune_fusion --dataset $(DATASET) --preset $(PRESET) $(call opt,--ckpt,$(CKPT)) $(call opt,--shards,$(SHARDS)) $(ARGS)

bench: setup  ## benchmarks -> bench/results.json and bench/README.md
	$(PY) scripts/bench.py $(ARGS)

bench-gpu: setup  ## one GPU: base-preset training (ceiling, loader-fed, compiled), GPU JPEG decode, MSR-VTT-size eval [ARGS=--quick: CPU dry run]
	$(PY) scripts/bench_gpu.py $(ARGS)

demo: setup  ## the whole pipeline on the synthetic corpora, tiny model (GPU recipe when CUDA is present) -> runs/demo/report.md
	$(PY) scripts/demo.py $(call opt,--run,$(RUN)) $(ARGS)

clean:  ## remove built shards, runs and generated data (keeps .venv)
	rm -rf runs data $(filter-out shards/README.md,$(wildcard shards/*))
