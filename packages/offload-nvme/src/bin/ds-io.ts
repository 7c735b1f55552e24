#!/usr/bin/env node
import { main } from '../cli.js';

const { code, out } = await main(process.argv.slice(2), (line) => process.stderr.write(line + '\n'));
(code === 0 ? process.stdout : process.stderr).write(out + '\n');
process.exit(code);
