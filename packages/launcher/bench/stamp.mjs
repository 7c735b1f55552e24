// Bench rank: prints the wall-clock time (ms, sub-ms precision) at which user code starts running.
console.log(`STAMP ${performance.timeOrigin + performance.now()}`);
