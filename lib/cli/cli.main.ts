#!/usr/bin/env node
import { run } from './cli.program';

/* The `nestjs-persistence` command (package.json "bin"). Exit codes: 0 ok, 1 failed, 2 usage. */
void run(process.argv).then((code) => {
  process.exitCode = code;
});
