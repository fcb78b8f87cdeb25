// A throwaway redis-server for one test: its own free port, nothing on disk, never the Redis
// the machine may already run. Ready once it says so on stdout.
import { spawn } from 'node:child_process';

import { WAIT_MS, freePort, withTimeout } from './helpers.mjs';

/** Starts one; `stop()` kills it and resolves once it exited. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    child.stdout.on('data', (chunk) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) resolve();
    });
  });
  // Bounded: a redis-server that never gets ready fails the test instead of hanging it.
  await withTimeout(ready, WAIT_MS * 4, `redis-server on ${port} to be ready`);
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
