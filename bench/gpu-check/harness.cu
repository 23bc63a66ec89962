// The GPU check's host harness (built by bench/gpu-check/main.ts with nvcc; needs a Hopper GPU).
//
//   harness case FILE       load a cubin, allocate and fill buffers, build TMA descriptors, launch the
//                           kernel once (outputs written to files), then time it: warm-up launches,
//                           then ITERS launches each between two CUDA events, rotating through ROTATE
//                           copies of the inputs (so the inputs of one launch are not in L2 from the
//                           last); prints "time_us MEDIAN MIN".
//   harness copy BYTES      device-to-device copy bandwidth (median of 20): "copy_gbps X".
//   harness gemm-bf16 N     cuBLAS BF16 N×N×N GEMM (median of 20): "bf16_tflops X".
//
// A case file has one directive a line:
//   cubin PATH | entry NAME | grid X Y Z | block X Y Z | smem BYTES | warmup N | iters N | rotate N
//   buffer ID BYTES INIT [out PATH]      INIT: zero | file:PATH | e4m3 | bf16 | f32pos
//   arg ptr ID
//   arg tmap ID u8|bf16 INNER OUTER BOX_INNER BOX_OUTER      (128-byte swizzle)
#include <cuda.h>
#include <cuda_runtime.h>
#if !defined(NO_CUBLAS) && __has_include(<cublas_v2.h>)
#define HAVE_CUBLAS 1
#include <cublas_v2.h>
#endif
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#define CU(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { const char* s_; cuGetErrorString(r_, &s_); fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, s_); exit(2); } } while (0)
#define RT(x) do { cudaError_t r_ = (x); if (r_ != cudaSuccess) { fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(r_)); exit(2); } } while (0)

__global__ void fill_random(unsigned char* p, size_t n, int kind, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    if (kind == 0) p[i] = (unsigned char)((h & 0xbf) & ~0x40);                 // e4m3, |x| < 2, never NaN
    else if (kind == 1) ((unsigned short*)p)[i] = (unsigned short)((h & 0x8000) | 0x3f00 | (h & 0x7f));  // bf16 in ±[0.5, 1)
    else ((float*)p)[i] = 0.5f + (h & 0xffff) / 131072.0f;                      // f32 in [0.5, 1)
  }
}

struct Buffer { std::string id; size_t bytes; std::string init; std::string out; std::vector<CUdeviceptr> copies; };
struct Arg { bool tmap; std::string id; std::string type; unsigned long long dims[2]; unsigned box[2]; };

static double median(std::vector<float> v) { std::sort(v.begin(), v.end()); size_t n = v.size(); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

static void fill(CUdeviceptr p, size_t bytes, const std::string& init, unsigned seed) {
  if (init == "zero") { RT(cudaMemset((void*)p, 0, bytes)); return; }
  if (init.rfind("file:", 0) == 0) {
    std::ifstream f(init.substr(5), std::ios::binary);
    std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (data.size() != bytes) { fprintf(stderr, "%s: %zu bytes, %zu expected\n", init.c_str(), data.size(), bytes); exit(2); }
    RT(cudaMemcpy((void*)p, data.data(), bytes, cudaMemcpyHostToDevice));
    return;
  }
  int kind = init == "e4m3" ? 0 : init == "bf16" ? 1 : 2;
  size_t n = kind == 0 ? bytes : kind == 1 ? bytes / 2 : bytes / 4;
  fill_random<<<1024, 256>>>((unsigned char*)p, n, kind, seed);
  RT(cudaGetLastError());
}

static int run_case(const char* path) {
  std::ifstream in(path);
  if (!in) { fprintf(stderr, "cannot read %s\n", path); return 2; }
  std::string cubin, entry, line;
  unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1}, smem = 0;
  int warmup = 3, iters = 20, rotate = 1;
  std::vector<Buffer> buffers;
  std::vector<Arg> args;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string w;
    if (!(ls >> w)) continue;
    if (w == "cubin") ls >> cubin;
    else if (w == "entry") ls >> entry;
    else if (w == "grid") ls >> grid[0] >> grid[1] >> grid[2];
    else if (w == "block") ls >> block[0] >> block[1] >> block[2];
    else if (w == "smem") ls >> smem;
    else if (w == "warmup") ls >> warmup;
    else if (w == "iters") ls >> iters;
    else if (w == "rotate") ls >> rotate;
    else if (w == "buffer") { Buffer b; std::string o; ls >> b.id >> b.bytes >> b.init; if (ls >> o && o == "out") ls >> b.out; buffers.push_back(b); }
    else if (w == "arg") {
      Arg a; std::string kind; ls >> kind >> a.id; a.tmap = kind == "tmap";
      if (a.tmap) ls >> a.type >> a.dims[0] >> a.dims[1] >> a.box[0] >> a.box[1];
      args.push_back(a);
    }
  }
  RT(cudaFree(0));
  CUmodule mod; CUfunction fn;
  CU(cuModuleLoad(&mod, cubin.c_str()));
  CU(cuModuleGetFunction(&fn, mod, entry.c_str()));
  if (smem > 48 * 1024) CU(cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)smem));
  // A kernel compiled with __cluster_dims__ carries its cluster shape (.reqnctapercluster): a plain
  // cuLaunchKernel launches it in clusters of that shape, and the grid must be a multiple of it.
  int cluster_w = 0;
  CU(cuFuncGetAttribute(&cluster_w, CU_FUNC_ATTRIBUTE_REQUIRED_CLUSTER_WIDTH, fn));
  if (cluster_w > 1 && grid[0] % (unsigned)cluster_w != 0) {
    fprintf(stderr, "%s: grid %u is not a multiple of the kernel's cluster width %d\n", entry.c_str(), grid[0], cluster_w);
    return 2;
  }
  unsigned seed = 1;
  for (auto& b : buffers) {
    int copies = b.out.empty() ? rotate : 1;
    for (int c = 0; c < copies; ++c) {
      CUdeviceptr p; CU(cuMemAlloc(&p, std::max<size_t>(b.bytes, 16)));
      if (c == 0) fill(p, b.bytes, b.init, seed++);
      else RT(cudaMemcpy((void*)p, (void*)b.copies[0], b.bytes, cudaMemcpyDeviceToDevice));
      b.copies.push_back(p);
    }
  }
  auto find = [&](const std::string& id) -> Buffer& { for (auto& b : buffers) if (b.id == id) return b; fprintf(stderr, "no buffer %s\n", id.c_str()); exit(2); };
  // One argument list per input copy.
  std::vector<std::vector<CUtensorMap>> maps(rotate, std::vector<CUtensorMap>(args.size()));
  std::vector<std::vector<CUdeviceptr>> ptrs(rotate, std::vector<CUdeviceptr>(args.size()));
  std::vector<std::vector<void*>> params(rotate, std::vector<void*>(args.size()));
  for (int c = 0; c < rotate; ++c) {
    for (size_t i = 0; i < args.size(); ++i) {
      Buffer& b = find(args[i].id);
      CUdeviceptr p = b.copies[std::min<size_t>(c, b.copies.size() - 1)];
      if (args[i].tmap) {
        const bool bf = args[i].type == "bf16";
        cuuint64_t dims[2] = {args[i].dims[0], args[i].dims[1]};
        cuuint64_t strides[1] = {args[i].dims[0] * (bf ? 2 : 1)};
        cuuint32_t box[2] = {args[i].box[0], args[i].box[1]};
        cuuint32_t estr[2] = {1, 1};
        CU(cuTensorMapEncodeTiled(&maps[c][i], bf ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void*)p, dims, strides, box, estr,
                                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
        params[c][i] = &maps[c][i];
      } else {
        ptrs[c][i] = p;
        params[c][i] = &ptrs[c][i];
      }
    }
  }
  auto launch = [&](int c) { CU(cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, 0, params[c].data(), nullptr)); };
  launch(0);
  RT(cudaDeviceSynchronize());
  for (auto& b : buffers) {
    if (b.out.empty()) continue;
    std::vector<char> host(b.bytes);
    RT(cudaMemcpy(host.data(), (void*)b.copies[0], b.bytes, cudaMemcpyDeviceToHost));
    std::ofstream f(b.out, std::ios::binary);
    f.write(host.data(), (std::streamsize)host.size());
  }
  if (iters > 0) {
    for (int i = 0; i < warmup; ++i) launch(i % rotate);
    std::vector<cudaEvent_t> ev(2 * iters);
    for (auto& e : ev) RT(cudaEventCreate(&e));
    for (int i = 0; i < iters; ++i) { RT(cudaEventRecord(ev[2 * i])); launch((i + 1) % rotate); RT(cudaEventRecord(ev[2 * i + 1])); }
    RT(cudaDeviceSynchronize());
    std::vector<float> ms(iters);
    for (int i = 0; i < iters; ++i) RT(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    printf("time_us %.3f %.3f\n", 1000.0 * median(ms), 1000.0 * *std::min_element(ms.begin(), ms.end()));
  }
  return 0;
}

static int run_copy(size_t bytes) {
  void *a, *b;
  RT(cudaMalloc(&a, bytes)); RT(cudaMalloc(&b, bytes));
  RT(cudaMemset(a, 1, bytes));
  std::vector<float> ms;
  cudaEvent_t e0, e1; RT(cudaEventCreate(&e0)); RT(cudaEventCreate(&e1));
  for (int i = 0; i < 23; ++i) {
    RT(cudaEventRecord(e0)); RT(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); RT(cudaEventRecord(e1)); RT(cudaEventSynchronize(e1));
    float t; RT(cudaEventElapsedTime(&t, e0, e1)); if (i >= 3) ms.push_back(t);
  }
  printf("copy_gbps %.1f\n", 2.0 * bytes / (median(ms) * 1e-3) / 1e9);
  return 0;
}

static int run_gemm_bf16(int n) {
#ifndef HAVE_CUBLAS
  (void)n;
  printf("bf16_tflops unavailable (built without cuBLAS)\n");
  return 0;
#else
  void *a, *b, *c;
  size_t bytes = (size_t)n * n * 2;
  RT(cudaMalloc(&a, bytes)); RT(cudaMalloc(&b, bytes)); RT(cudaMalloc(&c, bytes));
  fill_random<<<1024, 256>>>((unsigned char*)a, (size_t)n * n, 1, 7);
  fill_random<<<1024, 256>>>((unsigned char*)b, (size_t)n * n, 1, 9);
  cublasHandle_t h; if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasCreate failed\n"); return 2; }
  float alpha = 1.0f, beta = 0.0f;
  std::vector<float> ms;
  cudaEvent_t e0, e1; RT(cudaEventCreate(&e0)); RT(cudaEventCreate(&e1));
  for (int i = 0; i < 25; ++i) {
    RT(cudaEventRecord(e0));
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    RT(cudaEventRecord(e1)); RT(cudaEventSynchronize(e1));
    float t; RT(cudaEventElapsedTime(&t, e0, e1)); if (i >= 5) ms.push_back(t);
  }
  printf("bf16_tflops %.1f\n", 2.0 * n * (double)n * n / (median(ms) * 1e-3) / 1e12);
  return 0;
#endif
}

int main(int argc, char** argv) {
  CU(cuInit(0));
  if (argc == 3 && !strcmp(argv[1], "case")) return run_case(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "copy")) return run_copy(strtoull(argv[2], nullptr, 10));
  if (argc == 3 && !strcmp(argv[1], "gemm-bf16")) return run_gemm_bf16(atoi(argv[2]));
  fprintf(stderr, "usage: harness case FILE | copy BYTES | gemm-bf16 N\n");
  return 2;
}
