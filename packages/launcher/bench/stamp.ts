// Bench rank (TypeScript): the time user code starts, after the loader has compiled this file.
const now: number = performance.timeOrigin + performance.now();
console.log(`STAMP ${now}`);
