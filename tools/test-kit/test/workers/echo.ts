// A rank that reports its environment, and whether @ds/tensor came from the sources (the alias hook).
const tensorUrl = import.meta.resolve('@ds/tensor');
console.log(JSON.stringify({
  rank: process.env.RANK,
  world: process.env.WORLD_SIZE,
  extra: process.env.EXTRA,
  args: process.argv.slice(2),
  tensorSrc: tensorUrl.endsWith('/packages/tensor/src/index.ts'),
}));
if (process.env.HANG) setInterval(() => {}, 1000);
