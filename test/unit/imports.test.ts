// The shape of lib/ (docs/architecture.md, "What may import what"): no import cycles, and no
// import that runs upward between the ranks below. Type-only imports count too: a cycle of
// types is still a knot for the reader.
import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const LIB = resolve(dirname(fileURLToPath(import.meta.url)), '../../lib');

/** Rank of a file of lib/ (a module imports only from its own rank or below). */
const RANKS: Array<[number, string, RegExp]> = [
  [0, 'base: errors, the addon loader, owner marks, teardown, util', /^(util\/|errors\.ts$|native\.ts$|owner\.ts$|teardown\.ts$)/],
  [1, 'kernel objects: namespaces, security, cgroups, network, filesystems', /^(ns|security|cgroup|net|fs)\//],
  [2, 'planning: options, the plan, its ops and encoding', /^plan\//],
  [3, 'the spawn pipeline and its layers', /^spawn\//],
  [4, 'built on spawning: Sandbox, pools, the self-test, gc', /^(runner\/|gc\.ts$)/],
  [5, 'entry points: the library, the nsbox CLI, nsbox-runc (oci/)', /^((index|cli)\.ts$|oci\/)/],
];

function rankOf(file: string): number {
  const r = RANKS.find(([, , re]) => re.test(file));
  if (!r) throw new Error(`lib/${file} has no rank: add it to RANKS (and docs/architecture.md)`);
  return r[0];
}

function libFiles(dir = LIB): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? libFiles(p) : p.endsWith('.ts') ? [relative(LIB, p)] : [];
  });
}

/** Every relative import (static, re-export, dynamic) of every file: [from, to]. */
function importEdges(): Array<[string, string]> {
  const edges: Array<[string, string]> = [];
  const stat = /^\s*(?:import|export)\s[^'";]*?from\s+['"](\.[^'"]+)['"]|^\s*import\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;
  for (const f of libFiles()) {
    const src = readFileSync(join(LIB, f), 'utf8');
    for (const m of src.matchAll(stat)) {
      const spec = (m[1] ?? m[2] ?? m[3])!;
      edges.push([f, relative(LIB, resolve(dirname(join(LIB, f)), spec.replace(/\.js$/, '.ts')))]);
    }
  }
  return edges;
}

function cycles(edges: Array<[string, string]>): string[] {
  const g = new Map<string, string[]>();
  for (const [a, b] of edges) g.set(a, [...(g.get(a) ?? []), b]);
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const found: string[] = [];
  const visit = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of g.get(n) ?? []) {
      if (state.get(m) === 1) found.push([...stack.slice(stack.indexOf(m)), m].join(' -> '));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...g.keys()].sort()) if (!state.has(n)) visit(n);
  return found;
}

describe('the import graph of lib/', () => {
  const edges = importEdges();

  it('finds the imports it checks (the parser works)', () => {
    expect(edges.length).toBeGreaterThan(150);
    expect(edges).toContainEqual(['index.ts', 'spawn/spawn.ts']);
  });

  it('has no import cycles', () => {
    expect(cycles(edges)).toEqual([]);
  });

  it('has no import that runs upward', () => {
    const up = edges.filter(([a, b]) => rankOf(b) > rankOf(a)).map(([a, b]) => `${a} (rank ${rankOf(a)}) imports ${b} (rank ${rankOf(b)})`);
    expect(up).toEqual([]);
  });

  it('gives every file a rank', () => {
    for (const f of libFiles()) expect(() => rankOf(f)).not.toThrow();
  });

  it('finds a cycle and an upward import when there is one (the checks can fail)', () => {
    expect(cycles([['a.ts', 'b.ts'], ['b.ts', 'a.ts']])).toEqual(['a.ts -> b.ts -> a.ts']);
    expect(rankOf('net/network.ts') < rankOf('spawn/spawn.ts')).toBe(true);
  });
});
