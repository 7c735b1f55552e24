import { initDistributed } from '../../../src/comm/index.js';
const d = await initDistributed();
const a = new Float32Array(10).fill(d.rank + 1);
await d.world.allReduce({ dtype: 'f32', array: a });
console.log(`rank ${d.rank} sum ${a[0]}`);
await d.destroy();
