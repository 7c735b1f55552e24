#!/usr/bin/env node
// The installed `ds` entry point: runs the built CLI. It is a plain file that exists before the
// first build, so a fresh workspace checkout links the `ds` bin at install time (pnpm skips bins
// whose target is missing).
import '../dist/bin/ds.js';
