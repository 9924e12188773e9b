// Streaming read bandwidth probe for `npm run bench`: N threads each sum their slice of one large buffer.
// Decode of a bf16 model is a stream over its weights, so this is the roofline the decode column is
// compared against. The buffer is far larger than the caches, every byte is read once per pass, and the
// sums are printed so the compiler cannot drop the loads.
//
// The buffer asks for transparent huge pages, as the engines' weight file mappings can be backed by large
// folios too, so TLB misses do not lower the roofline.
//
// usage: bandwidth THREADS [MIB=2048] [PASSES=10]   prints one JSON object
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

// 64-byte vectors (GCC/Clang extension): the compiler emits full-width loads for whatever ISA -march picks.
typedef uint64_t vec_t __attribute__((vector_size(64)));

typedef struct {
  const vec_t *data;
  size_t n;  // vectors, a multiple of 4
  vec_t sum;
} job_t;

static pthread_barrier_t start, done;
static int passes;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
  job_t *job = arg;
  for (int p = 0; p < passes; p++) {
    pthread_barrier_wait(&start);
    // Four independent accumulators, so the loop is bound by loads rather than by add latency.
    vec_t s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    const vec_t *d = job->data;
    for (size_t i = 0; i < job->n; i += 4) {
      s0 += d[i];
      s1 += d[i + 1];
      s2 += d[i + 2];
      s3 += d[i + 3];
    }
    job->sum += s0 + s1 + s2 + s3;
    pthread_barrier_wait(&done);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 2048;
  passes = argc > 3 ? atoi(argv[3]) : 10;
  if (threads < 1 || threads > 1024 || mib < 2 || passes < 1) {
    fprintf(stderr, "usage: bandwidth THREADS [MIB] [PASSES]\n");
    return 2;
  }
  size_t bytes = mib << 20;
  char *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  int huge = madvise(buf, bytes, MADV_HUGEPAGE) == 0;
  memset(buf, 1, bytes);  // fault every page in before timing

  pthread_barrier_init(&start, NULL, threads + 1);
  pthread_barrier_init(&done, NULL, threads + 1);
  pthread_t *tids = calloc(threads, sizeof(pthread_t));
  job_t *jobs = calloc(threads, sizeof(job_t));
  size_t per = bytes / sizeof(vec_t) / threads / 4 * 4;
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job_t){(const vec_t *)buf + per * t, per, {0}};
    pthread_create(&tids[t], NULL, worker, &jobs[t]);
  }
  double *gbs = calloc(passes, sizeof(double));
  for (int p = 0; p < passes; p++) {
    double t0 = now_s();
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&done);
    gbs[p] = per * threads * sizeof(vec_t) / (now_s() - t0) / 1e9;
  }
  uint64_t sum = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tids[t], NULL);
    for (int k = 0; k < 8; k++) sum += jobs[t].sum[k];
  }
  qsort(gbs, passes, sizeof(double), cmp_double);
  printf("{\"threads\": %d, \"buffer_mib\": %zu, \"passes\": %d, \"huge_pages_requested\": %s, "
         "\"median_gb_s\": %.3f, \"best_gb_s\": %.3f, \"checksum\": %llu}\n",
         threads, mib, passes, huge ? "true" : "false", gbs[passes / 2], gbs[passes - 1], (unsigned long long)sum);
  return 0;
}
