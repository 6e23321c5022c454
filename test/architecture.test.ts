// Keeps ARCHITECTURE.md honest: the import direction between layers, and that key material and
// the capabilities that handle it are reachable only from psp/ and the memory controller.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function layerOf(file: string): string {
  const rel = relative(root, file);
  return rel.includes(sep) ? (rel.split(sep)[0] as string) : '(root)';
}

function imports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1] as string);
}

/** Which layers each layer may import (ARCHITECTURE.md: cli, scenarios → host, guest, owner → psp → soc → abi → crypto). */
const ALLOWED: Record<string, string[]> = {
  crypto: ['crypto'],
  abi: ['abi', 'crypto'],
  soc: ['soc', 'abi', 'crypto'],
  psp: ['psp', 'soc', 'abi', 'crypto'],
  host: ['host', 'psp', 'soc', 'abi', 'crypto'],
  guest: ['guest', 'psp', 'soc', 'abi', 'crypto'],
  owner: ['owner', 'abi', 'crypto'],
  scenarios: ['scenarios', 'host', 'guest', 'owner', 'psp', 'soc', 'abi', 'crypto'],
  cli: ['cli', 'scenarios', 'host', 'guest', 'owner', 'psp', 'soc', 'abi', 'crypto'],
  '(root)': ['(root)', 'cli', 'scenarios', 'host', 'guest', 'owner', 'psp', 'soc', 'abi', 'crypto'],
};
/** Third-party packages and the layers that may use them. */
const PACKAGES: Record<string, string[]> = { commander: ['cli'] };

const all = files(root);

describe('architecture', () => {
  it('finds the source tree', () => {
    expect(all.length).toBeGreaterThan(20);
  });

  it.each(all.map((f) => [relative(root, f), f]))('%s imports only downward', (_name, file) => {
    const layer = layerOf(file);
    const allowed = ALLOWED[layer];
    expect(allowed, `unknown layer ${layer}`).toBeDefined();
    for (const spec of imports(file)) {
      if (spec.startsWith('node:')) continue;
      if (spec.startsWith('.')) {
        const target = layerOf(resolve(dirname(file), spec));
        expect(allowed, `${relative(root, file)} imports ${spec} (layer ${target})`).toContain(target);
      } else {
        expect(PACKAGES[spec] ?? [], `${relative(root, file)} imports package ${spec}`).toContain(layer);
      }
    }
  });

  it('outside soc/ the chip is used only through soc/index.ts (the key-handling modules stay inside)', () => {
    for (const file of all) {
      if (layerOf(file) === 'soc') continue;
      for (const spec of imports(file).filter((s) => s.startsWith('.'))) {
        const target = resolve(dirname(file), spec);
        if (layerOf(target) === 'soc')
          expect(relative(root, target), `${relative(root, file)} imports ${spec}`).toBe(
            join('soc', 'index.js'),
          );
      }
    }
  });

  it('host and guest never import each other', () => {
    for (const file of all) {
      const layer = layerOf(file);
      if (layer !== 'host' && layer !== 'guest') continue;
      const other = layer === 'host' ? 'guest' : 'host';
      for (const spec of imports(file).filter((s) => s.startsWith('.')))
        expect(layerOf(resolve(dirname(file), spec))).not.toBe(other);
    }
  });

  it('only the PSP and the chip touch the key-handling capabilities', () => {
    const confined: [RegExp, (rel: string) => boolean][] = [
      // The capability to program key slots and the PSP's any-key DMA port.
      [
        /\bKeySlotProgrammer\b|\bPspDmaPort\b|\bpspCapabilities\b|\bPspCapabilities\b/,
        (rel) => rel.startsWith(`soc${sep}`) || rel.startsWith(`psp${sep}`),
      ],
      // Raw AES contexts exist only in the crypto layer.
      [/\bcreateCipheriv\b|\bcreateDecipheriv\b/, (rel) => rel.startsWith(`crypto${sep}`)],
      // Key slots are built only by the memory controller.
      [
        /\bcreateMemoryCipher\(/,
        (rel) => rel === join('soc', 'memory-controller.ts') || rel.startsWith(`crypto${sep}`),
      ],
      // Key generators: only the PSP (keys) and the memory controller (Zen 1 tweak constants) draw them.
      [/'psp-key-rng'|'umc-tweak'/, (rel) => rel === join('psp', 'psp.ts') || rel === join('soc', 'soc.ts')],
    ];
    for (const file of all) {
      const rel = relative(root, file);
      const src = readFileSync(file, 'utf8');
      for (const [pattern, allowed] of confined) {
        if (pattern.test(src)) expect(allowed(rel), `${rel} uses ${pattern}`).toBe(true);
      }
    }
  });
});
