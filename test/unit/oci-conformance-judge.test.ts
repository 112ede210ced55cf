// bench/oci-conformance.sh's judging of one test program's output (issue 16): the plans of
// several TAP streams add up (linux_cgroups_cpus prints two), and the groups that check a
// refusal (process_capabilities_fail, process_rlimits_fail: no TAP, exit 0 when create fails)
// pass only when the runtime's error names the bad value. The logs are shaped as the suite's.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const script = new URL('../../bench/oci-conformance.sh', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'nsbox-unit-judge-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cell(tap: string, rc: number, err?: string, value?: string): string {
  writeFileSync(`${dir}/tap`, tap);
  writeFileSync(`${dir}/err`, err ?? '');
  const args = ['--judge', `${dir}/tap`, String(rc), ...(value ? [`${dir}/err`, value] : [])];
  return execFileSync('bash', [script, ...args], { encoding: 'utf8' }).trim();
}

const points = (n: number) => Array.from({ length: n }, (_, i) => `ok ${i + 1} - p`).join('\n');

describe('oci-conformance.sh --judge', () => {
  it('adds up the plans of several TAP streams (linux_cgroups_cpus: its cases, then 1..0)', () => {
    expect(cell(`TAP version 13\n${points(112)}\n1..112\nTAP version 13\n1..0\n`, 0)).toBe('pass 112 112');
    expect(cell(`TAP version 13\n${points(3)}\n1..4\n`, 0)).toBe('FAIL 3 4');
    expect(cell(`TAP version 13\nnot ok 1 - x\n1..1\n`, 0)).toBe('FAIL 0 1');
    expect(cell(`TAP version 13\n${points(2)}\n1..2\n`, 1)).toBe('FAIL 2 2');
  });
  it('a refusal group passes when create failed naming the value; another refusal or an accepted value fails', () => {
    const refused = 'failed to create the container\nconfig.json: process.rlimits[1].type: unknown rlimit RLIMIT_TEST\n';
    expect(cell('', 0, refused, 'RLIMIT_TEST')).toBe('pass refused');
    expect(cell('', 0, 'failed to create the container\ncgroups in hybrid mode not supported\n', 'CAP_TEST')).toBe('FAIL other');
    // the runtime ran the container: the test prints its TAP and exits 1
    expect(cell(`TAP version 13\n${points(309)}\n1..309\n`, 1, 'Any value which cannot be mapped ... MUST cause an error\n', 'CAP_TEST')).toBe('FAIL 309/309');
  });
});
