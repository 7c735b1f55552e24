#!/usr/bin/env node
import { main } from '../cli.js';

// Progress of long work goes to stderr as it happens; the result goes to stdout at the end.
const { code, out } = main(process.argv.slice(2), { progress: (line) => process.stderr.write(line + '\n') });
(code === 0 ? process.stdout : process.stderr).write(out + '\n');
process.exit(code);
