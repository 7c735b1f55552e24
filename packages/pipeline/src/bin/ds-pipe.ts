#!/usr/bin/env node
import { main } from '../cli.js';

const { code, out } = main(process.argv.slice(2));
(code === 0 ? process.stdout : process.stderr).write(out + '\n');
process.exit(code);
