// A simulated AMD root: ARK (self-signed) and ASK in AMD's root-key format, RSA-4096 with RSA-PSS
// SHA-384 — the shape of AMD's real Rome+ roots, with key IDs that begin "SIMULATED" so that no one
// mistakes them for AMD's. It stands for AMD's offline signing service: it signs each chip's CEK at
// "manufacturing". RSA-4096 generation takes seconds, so a root is created once and kept in a cache
// directory (SEVSIM_AMD_ROOT_DIR, default <tmpdir>/sevsim-simulated-amd-root-<uid>, private to the user); every simulated
// platform on the machine then chains to the same root, as real chips chain to AMD's.
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AmdRootCert,
  SevCertAlgo,
  SevCertUsage,
  amdRootCertSignedLength,
  encodeAmdRootCert,
  encodeSevCert,
  sevCertSignedBytes,
  type SevCert,
} from '../abi/index.js';
import { rsaPssSignLe, rsaPublicKeyToLe } from '../crypto/index.js';

const KEY_BITS = 4096;
/** Key IDs start with this, in ASCII: the root says it is simulated. */
export const SIMULATED_KEY_ID_PREFIX = Buffer.from('SIMULATED', 'ascii');

export interface SimulatedAmdRoot {
  /** ARK and ASK certificates (1600 bytes each, AMD root-key format). */
  readonly ark: Buffer;
  readonly ask: Buffer;
  /** Signs a CEK body with the ASK (slot usage ASK 0x13, algo RSA_SHA384). */
  signCek(cek: SevCert): SevCert;
}

function keyId(): Buffer {
  return Buffer.concat([SIMULATED_KEY_ID_PREFIX, randomBytes(16 - SIMULATED_KEY_ID_PREFIX.length)]);
}

function rootCert(
  key: KeyObject,
  usage: number,
  id: Buffer,
  certifyingId: Buffer,
  signer: KeyObject,
): Buffer {
  const { modulus, exponent } = rsaPublicKeyToLe(key, KEY_BITS / 8, KEY_BITS / 8);
  const unsigned: AmdRootCert = {
    version: 1,
    keyId: id,
    certifyingId,
    keyUsage: usage,
    reserved: Buffer.alloc(16),
    pubexpBits: KEY_BITS,
    modulusBits: KEY_BITS,
    pubexp: exponent,
    modulus,
    signature: undefined,
  };
  const signedPart = encodeAmdRootCert(unsigned).subarray(0, amdRootCertSignedLength(unsigned));
  return encodeAmdRootCert({ ...unsigned, signature: rsaPssSignLe(signer, 'sha384', signedPart) });
}

class Root implements SimulatedAmdRoot {
  readonly #askKey: KeyObject;

  constructor(
    readonly ark: Buffer,
    readonly ask: Buffer,
    askKey: KeyObject,
  ) {
    this.#askKey = askKey;
  }

  signCek(cek: SevCert): SevCert {
    const signature = rsaPssSignLe(this.#askKey, 'sha384', sevCertSignedBytes(encodeSevCert(cek)));
    const slot = {
      type: 'rsa' as const,
      usage: SevCertUsage.ASK,
      algo: SevCertAlgo.RSA_SHA384,
      signature: Buffer.concat([signature, Buffer.alloc(0x200 - signature.length)]),
    };
    return { ...cek, signatures: [slot, { type: 'empty' }] };
  }

  toJSON(): string {
    return '[SimulatedAmdRoot]';
  }
}

function generate(): { ark: Buffer; ask: Buffer; askKeyPem: string } {
  const ark = generateKeyPairSync('rsa', { modulusLength: KEY_BITS, publicExponent: 0x10001 });
  const ask = generateKeyPairSync('rsa', { modulusLength: KEY_BITS, publicExponent: 0x10001 });
  const arkId = keyId();
  const askId = keyId();
  return {
    ark: rootCert(ark.privateKey, SevCertUsage.ARK, arkId, arkId, ark.privateKey),
    ask: rootCert(ask.privateKey, SevCertUsage.ASK, askId, arkId, ark.privateKey),
    askKeyPem: ask.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

const loaded = new Map<string, SimulatedAmdRoot>();

/** Per user, so another local user cannot plant a root everyone's platforms would chain to. */
function defaultRootDirectory(): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return process.env.SEVSIM_AMD_ROOT_DIR ?? join(tmpdir(), `sevsim-simulated-amd-root-${uid}`);
}

/** Refuses a root directory another user owns or others may write. */
function checkOwnership(directory: string): void {
  const st = statSync(directory);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(`simulated AMD root directory ${directory} is not private to this user`);
  }
}

/** The machine's simulated AMD root, created on first use. */
export function simulatedAmdRoot(directory = defaultRootDirectory()): SimulatedAmdRoot {
  const cached = loaded.get(directory);
  if (cached !== undefined) return cached;
  const file = join(directory, 'root.json');
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  checkOwnership(directory);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const fresh = generate();
    const temp = `${file}.${process.pid}.tmp`;
    writeFileSync(
      temp,
      JSON.stringify({
        ark: fresh.ark.toString('base64'),
        ask: fresh.ask.toString('base64'),
        askKey: fresh.askKeyPem,
      }),
      { mode: 0o600 },
    );
    // link() never replaces: if another process won the race, everyone uses its root.
    try {
      linkSync(temp, file);
    } catch {
      /* another process created it first */
    }
    rmSync(temp, { force: true });
    text = readFileSync(file, 'utf8');
  }
  const parsed = JSON.parse(text) as { ark: string; ask: string; askKey: string };
  const root = new Root(
    Buffer.from(parsed.ark, 'base64'),
    Buffer.from(parsed.ask, 'base64'),
    createPrivateKey(parsed.askKey),
  );
  loaded.set(directory, root);
  return root;
}
