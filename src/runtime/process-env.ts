/**
 * Environment for a Herald node process, set before it starts (glibc reads it once). LMDB's commits
 * run on worker threads and allocate large dirty-page buffers; with glibc's defaults each thread gets
 * its own arena and freed large buffers stay in the heap, so resident memory grows after a burst and
 * does not come back. Two arenas, a fixed mmap threshold (large buffers are mapped and unmapped) and
 * a low trim threshold keep a node's memory flat. `npm start`, the cluster launcher, the tests and the
 * benchmarks all start nodes with it.
 */
export const nodeProcessEnv = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '131072',
  MALLOC_TRIM_THRESHOLD_: '1048576',
} as const;

