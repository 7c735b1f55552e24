#!/usr/bin/env node
// The installed `ds-report` command: loads the built entry (see load-built.js).
import { loadBuilt } from './load-built.js';

await loadBuilt('ds-report');
