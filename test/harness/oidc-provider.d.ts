// Minimal ambient types for the parts of `oidc-provider` v9 (https://github.com/panva/node-oidc-provider)
// that the test identity server uses. The package ships no types and @types/oidc-provider is not installed;
// the shapes below were read from node_modules/oidc-provider/lib (v9.13.3).

declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  /** The `ctx.oidc` object oidc-provider attaches to each Koa context (lib/helpers/oidc_context.js). */
  export interface OIDCContextLike {
    /** Name of the matched route, e.g. "token", "authorization", "interaction". */
    readonly route: string | undefined;
    /** Request parameters after parsing; values are strings (or string arrays for `resource`). */
    readonly params: Record<string, unknown> | undefined;
    /** `params.scope` split on spaces. */
    readonly requestParamScopes: Set<string>;
  }

  /** The subset of a Koa context used by the harness middleware. */
  export interface KoaContextLike {
    readonly req: IncomingMessage;
    readonly res: ServerResponse;
    readonly method: string;
    readonly path: string;
    status: number;
    body: unknown;
    set(field: string, value: string): void;
    remove(field: string): void;
    readonly oidc: OIDCContextLike | undefined;
  }

  /** A registered client as oidc-provider models it (lib/models/client.js); only fields the harness reads. */
  export interface ClientLike {
    readonly clientId: string;
    readonly scope?: string;
  }

  /** Storage adapter contract (lib/adapters/memory_adapter.js); payloads are plain JSON objects. */
  export interface AdapterLike {
    upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void>;
    find(id: string): Promise<Record<string, unknown> | undefined>;
    findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined>;
    findByUid(uid: string): Promise<Record<string, unknown> | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export type Middleware = (ctx: KoaContextLike, next: () => Promise<void>) => Promise<void>;

  /** Configuration object; see node_modules/oidc-provider/lib/helpers/defaults.js for every key. */
  export type Configuration = Record<string, unknown>;

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    /** Koa request listener. */
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    /** Adds a Koa middleware that runs BEFORE oidc-provider's own routing (pre/post processing). */
    use(fn: Middleware): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
    pathFor(name: string, opts?: Record<string, string>): string;
  }

  class OIDCProviderError extends Error {
    readonly error: string;
    readonly error_description: string | undefined;
    readonly status: number;
  }

  export const errors: {
    readonly OIDCProviderError: typeof OIDCProviderError;
    readonly InvalidScope: new (description: string, scope?: string) => OIDCProviderError;
    readonly InvalidTarget: new (description?: string) => OIDCProviderError;
  };

  export default Provider;
}

declare module "oidc-provider/lib/adapters/memory_adapter.js" {
  import type { AdapterLike } from "oidc-provider";
  /** Creates an in-memory storage adapter factory with its own private store. */
  export function createMemoryAdapter(clockTolerance?: number): (model: string) => AdapterLike;
}
