// The filesystem layer's pure parts: tar member names, byte sizes, paths inside a root,
// option checks that need no kernel.
import { describe, expect, it } from 'vitest';
import { layerPath } from '../../lib/fs/extract.js';
import { byteSize, innerPath } from '../../lib/util/validate.js';
import { OverlayMount } from '../../lib/fs/overlay.js';
import { NsboxError } from '../../lib/errors.js';

describe('layerPath', () => {
  it('normalises member names to paths relative to the layer', () => {
    expect(layerPath('./etc/passwd')).toBe('etc/passwd');
    expect(layerPath('/etc/passwd')).toBe('etc/passwd');
    expect(layerPath('etc//x/./y/')).toBe('etc/x/y');
    expect(layerPath('a/b/../c')).toBe('a/c');
    expect(layerPath('./')).toBe('');
  });
  it('refuses names that leave the layer', () => {
    for (const n of ['..', '../x', 'a/../../x', './../x', '/../x', 'a\0b']) {
      expect(() => layerPath(n), n).toThrow(NsboxError);
    }
  });
});

describe('byteSize', () => {
  it('reads numbers and k/M/G strings', () => {
    expect(byteSize('o', 10)).toBe(10);
    expect(byteSize('o', '64k')).toBe(65536);
    expect(byteSize('o', '8M')).toBe(8 << 20);
    expect(byteSize('o', '1GiB')).toBe(1 << 30);
  });
  it('names the option on bad input', () => {
    expect(() => byteSize('options.x', -1)).toThrow(/options.x/);
    expect(() => byteSize('options.x', 1.5)).toThrow(RangeError);
    expect(() => byteSize('options.x', 'lots')).toThrow(TypeError);
    expect(() => byteSize('options.x', {})).toThrow(TypeError);
  });
});

describe('innerPath', () => {
  it('keeps paths inside the root', () => {
    expect(innerPath('p', '/etc/../../x')).toBe('x');
    expect(innerPath('p', 'a/b/')).toBe('a/b');
    expect(innerPath('p', '/')).toBe('');
    expect(() => innerPath('p', 'a\0')).toThrow(TypeError);
  });
});

describe('OverlayMount options', () => {
  it('are checked before anything is mounted', () => {
    expect(() => OverlayMount.mount(undefined as never)).toThrow(TypeError);
    expect(() => OverlayMount.mount({ lower: 'x' as never, target: '/' })).toThrow(/options.lower/);
    expect(() => OverlayMount.mount({ lower: new Array(501).fill('/'), target: '/' })).toThrow(RangeError);
  });
});
