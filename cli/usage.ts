/** The `dsv3` command's usage text (printed by --help and under every usage error). */
import { COMPILER_VERSION } from "../compiler/version.js";

export const USAGE = `dsv3 ${COMPILER_VERSION} — a compiler for DeepSeek-V3-class models

usage:
  dsv3 check FILE [--json]                        check a spec (.dsv3 or .ts); list its schedules
  dsv3 stats FILE [--schedule NAME] [--json]      parameters, KV cache, FLOPs per token
  dsv3 compile FILE --schedule NAME -o DIR [--dump-after=PASS|all] [--timings]
                                                  write a bundle (atomically) to DIR; dump the Graph IR
                                                  after a lowering pass, time the passes (stderr)
  dsv3 plan FILE --schedule NAME [--json]         the per-GPU plan: stages, experts, memory, traffic
  dsv3 run FILE --backend cpu [--steps N] [--seed S] [--batch B] [--json]
                                                  train the model on synthetic tokens on the CPU (reference ops)
  dsv3 run FILE --backend cpu --generate N --prompt-tokens 1,2,3 [--speculative] [--steps N] [--seed S] [--json]
                                                  greedy decoding with a KV cache (MTP drafts with --speculative)
  dsv3 run FILE --schedule NAME --backend cpu [--seed S] [--json]
                                                  run the schedule's plan on virtual ranks and compare it with
                                                  one device (outputs, loss, gradients, bytes per link)
  dsv3 run FILE --backend cpu --weights PATH --tokens 1,2,3 [--logits] [--json]
                                                  the forward on a Hugging Face checkpoint's weights
  dsv3 run FILE --save-weights DIR [--seed S] [--dtype f32|bf16|fp8] [--json]
                                                  write the seeded initial weights as a HF checkpoint
  dsv3 shard FILE --schedule NAME --weights PATH -o DIR
                                                  cut a checkpoint into per-GPU shards (a bundle)
  dsv3 verify DIR                                 re-hash a bundle; non-zero if tampered
  dsv3 fmt [--check] FILE|DIR...                  format .dsv3 files in place (canonical form)
  dsv3 export FILE --to dsv3|ts|hf [-o OUT]       the Spec as canonical .dsv3, a TypeScript spec, or a HF config
  dsv3 import-hf CONFIG.json [-o OUT.dsv3] [--with-schedules]
                                                  a .dsv3 spec from a DeepSeek V2/V3 Hugging Face config
  dsv3 pipeline --kind dualpipe|dualpipev|1f1b|zb1p --stages P --microbatches N
                [--cost F=1,B=2,W=1,FB=3] [--json] [--svg FILE]
                                                  a pipeline schedule, executed and measured
  dsv3 eplb --load FILE.json --replicas R --groups G --nodes N --gpus P [--json] [--exact-reference]
                                                  expert placement with redundant experts (EPLB)
  dsv3 simulate SPEC|BUNDLE --schedule NAME [--json] [--trace FILE] [--acceptance P]
                                                  simulate one step on the modelled cluster: step time, MFU,
                                                  throughput; --trace writes a Perfetto/Chrome trace;
                                                  --acceptance: MTP draft acceptance (decode, default 0.85)
  dsv3 simulate SPEC --schedule NAME --sweep NAME=V1,V2 [NAME=V1,V2 ...] [--json]
                                                  rank configurations that fit by simulated throughput
  dsv3 report BUNDLE [-o FILE.html]               one self-contained HTML report of a bundle (SVG charts)
  dsv3 --version | --help
`;
