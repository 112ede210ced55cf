// Test helper: a stand-in sandbox made with the `unshare` CLI (test setup only) that waits on
// stdin like nsbox's child waits on "go", so the hand-off runs exactly as on the spawn path:
// prepareSandboxNetwork -> netlinkHandoff(child pid) -> go -> program -> release.
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { prepareSandboxNetwork, type NetworkOption, type PreparedNetwork } from '../../lib/net/network.js';
import { netNative } from '../../lib/net/native.js';

export interface Sandboxed {
  pid: number;
  prepared: PreparedNetwork;
  result: Promise<{ code: number | null; stdout: string; stderr: string }>;
  kill(): void;
}

let n = 0;
export async function runSandboxed(script: string, network: NetworkOption, handoff: 'move' | 'create' = 'create', program = 'python3'): Promise<Sandboxed> {
  const prepared = await prepareSandboxNetwork(network, { id: `t${process.pid}-${n++}`, handoff });
  const c = spawn('unshare', ['-n', 'sh', '-c', `read go; ip link set lo up; exec ${program} -c "$0"`, script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const me = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 400; i++) {
    try { if (readlinkSync(`/proc/${c.pid}/ns/net`) !== me) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 5));
  }
  try {
    for (const h of prepared.handoff) netNative().netlinkHandoff(h, c.pid!);
  } catch (e) {
    c.kill('SIGKILL');
    await prepared.release();
    throw e;
  }
  let stdout = '', stderr = '';
  c.stdout!.on('data', (d) => (stdout += d));
  c.stderr!.on('data', (d) => (stderr += d));
  const result = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    c.on('close', async (code) => {
      await prepared.release();
      resolve({ code, stdout, stderr });
    });
  });
  c.stdin!.end('go\n');
  return { pid: c.pid!, prepared, result, kill: () => c.kill('SIGKILL') };
}
