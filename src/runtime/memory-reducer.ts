/**
 * Gives memory back after a burst. V8 collects garbage by allocation pressure; when a node falls idle
 * after a burst of publishing, the Buffers the burst left behind (request bodies, encoded log entries)
 * stay counted in the process's resident memory until something allocates again. When node runs with
 * `--expose-gc` (as `npm start` does), one full collection after the node has been quiet for a moment
 * returns them. Without the flag this does nothing.
 */
const quietMs = 2000;
const externalBytesMin = 32 * 1024 * 1024;

export function startMemoryReducer(): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return () => {};
  let lastExternal = process.memoryUsage().external;
  let quietSince = Date.now();
  const timer = setInterval(() => {
    const { external } = process.memoryUsage();
    // Still changing: not quiet yet.
    if (Math.abs(external - lastExternal) > 1024 * 1024) {
      lastExternal = external;
      quietSince = Date.now();
      return;
    }
    if (external > externalBytesMin && Date.now() - quietSince >= quietMs) {
      gc();
      lastExternal = process.memoryUsage().external;
      quietSince = Date.now();
    }
  }, 500);
  timer.unref();
  return () => clearInterval(timer);
}
