// One rank: builds pipe 2 x data 2 groups over the world and all-reduces its rank on the data group.
import { initDistributed } from '../../../src/comm/init.js';
import { buildParallelGroups } from '../../../src/comm/topology.js';

const dist = await initDistributed();
const groups = await buildParallelGroups(dist, { pipe: 2 });
const sum = Float32Array.of(dist.rank);
await groups.data!.allReduce({ dtype: 'f32', array: sum }, { op: 'sum' });
console.log(JSON.stringify({ data: groups.data!.ranks, pipe: groups.pipe!.ranks, model: groups.model?.ranks ?? null, sum: sum[0] }));
await dist.destroy();
