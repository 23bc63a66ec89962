# PyTorch's FP8 scaled matmul on the GPU check's GEMM shapes, timed like the harness times ours
# (CUDA events, warm-up, median, inputs rotated past L2). Prints one line a shape:
#   torch M N K TFLOPS MODE      MODE: blockwise (1x128 / 128x128 scales), rowwise or tensorwise,
# the finest scaling this PyTorch accepts. Reads "M N K" triples from argv.
import sys

import torch


def scaled_mm(a, b, m, n, k, mode):
    if mode == "blockwise":
        sa = torch.ones(m, k // 128, device="cuda", dtype=torch.float32)
        sb = torch.ones(k // 128, n // 128, device="cuda", dtype=torch.float32)
    elif mode == "rowwise":
        sa = torch.ones(m, 1, device="cuda", dtype=torch.float32)
        sb = torch.ones(1, n, device="cuda", dtype=torch.float32)
    else:
        sa = torch.ones((), device="cuda", dtype=torch.float32)
        sb = torch.ones((), device="cuda", dtype=torch.float32)
    return lambda i: torch._scaled_mm(a[i], b[i].t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)


def main():
    nums = [int(x) for x in sys.argv[1:]]
    for m, n, k in zip(nums[0::3], nums[1::3], nums[2::3]):
        copies = max(1, min(16, (200 << 20) // (m * k + n * k)))
        a = [torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn) for _ in range(copies)]
        b = [torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn) for _ in range(copies)]
        run, mode = None, None
        for candidate in ("blockwise", "rowwise", "tensorwise"):
            try:
                f = scaled_mm(a, b, m, n, k, candidate)
                f(0)
                torch.cuda.synchronize()
                run, mode = f, candidate
                break
            except Exception:
                continue
        if run is None:
            print(f"torch {m} {n} {k} nan unsupported")
            continue
        for i in range(5):
            run(i % copies)
        times = []
        for i in range(30):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            run(i % copies)
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
        times.sort()
        ms = times[len(times) // 2]
        print(f"torch {m} {n} {k} {2 * m * n * k / (ms * 1e-3) / 1e12:.1f} {mode}")


main()
