// AMD's Key Distribution Service for simulated chips (sev-reference §3.4; AMD 57230 "VCEK Certificate
// and KDS Interface Specification"; go-sev-guest kds/kds.go). AMD can certify any chip's VCEK at any TCB
// without asking the chip because it knows every chip secret from manufacturing; this KDS does the same
// with a registry of simulated chip secrets, and answers AMD's URL shapes as a pure request handler:
//
//   GET /vcek/v1/{Milan|Genoa|Turin}/cert_chain                 → PEM, the ASK then the ARK
//   GET /vcek/v1/{product}/{hwid hex}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=   (+ fmcSPL on Turin) → DER VCEK
//
// Errors follow what AMD's service is seen to answer: 404 for an unknown product, path or chip (a zero
// or unknown hwID: snpguest issue #37), 400 for a malformed hwID or TCB query. The chip secrets stay in
// #private fields; only public keys and certificates leave.
import { encodeTcb } from '../abi/index.js';
import { derToPem } from '../abi/der-writer.js';
import { chipSecret, fusedChipSecret } from './chip-fuses.js';
import { type SimulatedAmdRoot, simulatedAmdRoot } from './simulated-amd-root.js';
import {
  type SnpProduct,
  type SnpProductInfo,
  SNP_PRODUCTS,
  SNP_PRODUCT_NAMES,
  chipIdFromSecret,
  hwIdFromChipId,
  snpProduct,
  tcbSpls,
  vcekPublicKey,
} from './vcek.js';

// The public facts about SNP products (names, hwID sizes, TCB layouts) that clients of the KDS need; the
// key-deriving part of vcek.ts stays inside psp/.
export {
  type SnpProduct,
  type SnpProductInfo,
  SNP_PRODUCTS,
  SNP_PRODUCT_NAMES,
  SnpProductError,
  snpProduct,
} from './vcek.js';

/** An HTTP answer: status, headers (lower-case names) and body. */
export interface KdsResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** A chip the KDS knows: public facts only. */
export interface KdsChip {
  readonly product: SnpProduct;
  /** The hwID as the KDS URL spells it: lower-case hex, 128 digits (Turin: 16). */
  readonly hwId: string;
}

/** Where the KDS's signatures and clock come from. */
export interface SimulatedKdsOptions {
  /** The AMD root that signs the VCEKs (default: the machine's simulated root). */
  readonly root?: SimulatedAmdRoot;
  /** The clock that starts a new VCEK certificate's validity (default: now). */
  readonly now?: () => Date;
}

/** Content types of the answers. AMD does not document them; these are the conventional ones. */
export const KDS_CONTENT_TYPE = {
  vcek: 'application/x-x509-ca-cert',
  certChain: 'application/x-pem-file',
  error: 'text/plain; charset=utf-8',
} as const;

/** The TCB query parameters a product's VCEK URL takes, in go-sev-guest's order. */
export function kdsSplParameters(product: SnpProduct): readonly string[] {
  return SNP_PRODUCTS[product].tcbLayout === 'turin'
    ? ['fmcSPL', 'blSPL', 'teeSPL', 'snpSPL', 'ucodeSPL']
    : ['blSPL', 'teeSPL', 'snpSPL', 'ucodeSPL'];
}

/** The path (from the service root) of a product's ASK + ARK chain. */
export function kdsCertChainPath(product: SnpProduct): string {
  return `/vcek/v1/${SNP_PRODUCTS[product].kdsName}/cert_chain`;
}

/** The path and query of a chip's VCEK at `tcb` (a REPORTED_TCB), as AMD's KDS and go-sev-guest spell it. */
export function kdsVcekPath(product: SnpProduct, hwId: Uint8Array, tcb: bigint): string {
  const info = SNP_PRODUCTS[product];
  if (hwId.length !== info.hwIdBytes)
    throw new RangeError(`a ${info.kdsName} hwID has ${info.hwIdBytes} bytes, got ${hwId.length}`);
  const spls = tcbSpls(product, tcb);
  const value: Record<string, number | undefined> = {
    fmcSPL: spls.fmc,
    blSPL: spls.bootloader,
    teeSPL: spls.tee,
    snpSPL: spls.snp,
    ucodeSPL: spls.microcode,
  };
  const query = kdsSplParameters(product)
    .map((k) => `${k}=${value[k] ?? 0}`)
    .join('&');
  return `/vcek/v1/${info.kdsName}/${Buffer.from(hwId).toString('hex')}?${query}`;
}

const REASON: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
};

function error(status: number, detail: string, extra: Record<string, string> = {}): KdsResponse {
  const body = Buffer.from(`${status} - ${REASON[status] ?? 'Error'}\n${detail}\n`, 'utf8');
  return {
    status,
    headers: { 'content-type': KDS_CONTENT_TYPE.error, 'content-length': String(body.length), ...extra },
    body,
  };
}

function ok(contentType: string, body: Buffer): KdsResponse {
  return {
    status: 200,
    headers: { 'content-type': contentType, 'content-length': String(body.length) },
    body,
  };
}

const PRODUCT_BY_KDS_NAME = new Map<string, SnpProductInfo>(
  SNP_PRODUCT_NAMES.map((p) => [SNP_PRODUCTS[p].kdsName, SNP_PRODUCTS[p]]),
);

/** Issued certificates kept so a repeated request gets the same bytes; bounded for a long-running server. */
const MAX_CACHED_VCEKS = 4096;

/** AMD's KDS for simulated chips. */
export class SimulatedKds {
  readonly #root: () => SimulatedAmdRoot;
  readonly #now: () => Date;
  /** product/hwid → chip secret. */
  readonly #chips = new Map<string, { secret: Buffer; chip: KdsChip }>();
  readonly #issued = new Map<string, Buffer>();

  constructor(opts: SimulatedKdsOptions = {}) {
    const root = opts.root;
    // The machine root is loaded lazily: creating it the first time takes seconds of RSA key generation.
    this.#root = root !== undefined ? () => root : () => simulatedAmdRoot();
    this.#now = opts.now ?? (() => new Date());
  }

  /** Registers a chip by its secret ("manufacturing"); `product` as sevsim ("milan") or AMD ("Milan") spells it. */
  registerChip(secret: Uint8Array, product: string): KdsChip {
    const info = snpProduct(product);
    const hwId = hwIdFromChipId(chipIdFromSecret(secret), info.product).toString('hex');
    const chip: KdsChip = { product: info.product, hwId };
    this.#chips.set(`${info.product}/${hwId}`, { secret: Buffer.from(secret), chip });
    return chip;
  }

  /** Registers the chip a seeded platform has (the chip secret derived from the seed as chip-fuses.ts does). */
  registerSeededChip(seed: string | number | bigint, product: string): KdsChip {
    return this.registerChip(chipSecret(seed, undefined), product);
  }

  /** Registers the chip fused into a platform state directory; throws if the directory holds none. */
  registerStateDirectory(stateDirectory: string, product: string): KdsChip {
    const secret = fusedChipSecret(stateDirectory);
    if (secret === undefined) throw new Error(`no chip (fuses.bin) in state directory ${stateDirectory}`);
    return this.registerChip(secret, product);
  }

  /** The chips the KDS knows, in registration order. */
  get chips(): readonly KdsChip[] {
    return [...this.#chips.values()].map((c) => c.chip);
  }

  /** The product's ASK then ARK, PEM — the body of /vcek/v1/{product}/cert_chain. */
  certChainPem(product: SnpProduct): string {
    const { ark, ask } = this.#root().snpCertificates(product);
    return derToPem(ask) + derToPem(ark);
  }

  /**
   * Answers one request. `url` is a path with its query ("/vcek/v1/Milan/cert_chain") or an absolute URL;
   * only its path and query matter. Never throws: every input gets an HTTP answer.
   */
  handle(method: string, url: string): KdsResponse {
    const res = this.#route(method.toUpperCase(), url);
    return method.toUpperCase() === 'HEAD' ? { ...res, body: Buffer.alloc(0) } : res;
  }

  #route(method: string, url: string): KdsResponse {
    if (method !== 'GET' && method !== 'HEAD')
      return error(405, `${method} is not supported; the KDS answers GET`, { allow: 'GET, HEAD' });
    let u: URL;
    try {
      u = new URL(url, 'http://kds.invalid');
    } catch {
      return error(400, 'malformed URL');
    }
    if (u.pathname.startsWith('/vlek/v1/'))
      return error(404, 'VLEKs are issued to cloud providers only; the simulated KDS issues VCEKs');
    const m = /^\/vcek\/v1\/([^/]+)\/([^/]+)$/.exec(u.pathname);
    if (m === null) return error(404, `no such resource ${u.pathname} (try /vcek/v1/{product}/cert_chain)`);
    const info = PRODUCT_BY_KDS_NAME.get(m[1] as string);
    if (info === undefined)
      return error(
        404,
        `unknown product "${m[1] as string}" (one of: ${[...PRODUCT_BY_KDS_NAME.keys()].join(', ')})`,
      );
    const leaf = m[2] as string;
    if (leaf === 'cert_chain')
      return ok(KDS_CONTENT_TYPE.certChain, Buffer.from(this.certChainPem(info.product)));
    if (leaf === 'crl') return error(404, 'the simulated KDS publishes no CRL');
    return this.#vcek(info, leaf, u.searchParams);
  }

  #vcek(info: SnpProductInfo, hwIdText: string, query: URLSearchParams): KdsResponse {
    const digits = info.hwIdBytes * 2;
    if (!/^[0-9a-fA-F]+$/.test(hwIdText) || hwIdText.length !== digits)
      return error(400, `a ${info.kdsName} hwID is ${digits} hex digits`);
    const hwId = hwIdText.toLowerCase();
    const wanted = kdsSplParameters(info.product);
    const spl: Record<string, number> = {};
    for (const key of new Set(query.keys())) {
      if (!wanted.includes(key))
        return error(400, `unexpected parameter ${key} (a ${info.kdsName} VCEK takes ${wanted.join(', ')})`);
      const values = query.getAll(key);
      if (values.length !== 1) return error(400, `${key} is given ${values.length} times`);
      const v = values[0] as string;
      if (!/^\d{1,3}$/.test(v) || Number(v) > 255)
        return error(400, `${key} must be an integer 0-255, got "${v}"`);
      spl[key] = Number(v);
    }
    const missing = wanted.filter((k) => spl[k] === undefined);
    if (missing.length > 0) return error(400, `missing ${missing.join(', ')}`);
    const tcb = encodeTcb({
      layout: info.tcbLayout,
      fmc: spl.fmcSPL,
      bootloader: spl.blSPL ?? 0,
      tee: spl.teeSPL ?? 0,
      snp: spl.snpSPL ?? 0,
      microcode: spl.ucodeSPL ?? 0,
    });
    const known = this.#chips.get(`${info.product}/${hwId}`);
    if (known === undefined) return error(404, `no ${info.kdsName} chip with hwID ${hwId.slice(0, 16)}…`);
    const key = `${info.product}/${hwId}/${tcb}`;
    let der = this.#issued.get(key);
    if (der === undefined) {
      der = this.#root().issueVcekCertificate({
        product: info.product,
        publicKey: vcekPublicKey(known.secret, info.product, tcb),
        hwId: Buffer.from(hwId, 'hex'),
        tcb,
        notBefore: this.#now(),
      });
      if (this.#issued.size >= MAX_CACHED_VCEKS) {
        const oldest = this.#issued.keys().next().value;
        if (oldest !== undefined) this.#issued.delete(oldest);
      }
      this.#issued.set(key, der);
    }
    return ok(KDS_CONTENT_TYPE.vcek, Buffer.from(der));
  }

  toJSON(): string {
    return `[SimulatedKds: ${this.#chips.size} chips]`;
  }
}
