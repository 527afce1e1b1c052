import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import type { FetchContext, TokenSource } from "./reconciler.ts";

/** The undici OAuth client, as the issuer sees it. */
export interface TokenFetcher {
  fetchToken(req: TokenRequest, opts: { fallbackLifetimeSeconds?: number }): Promise<IssuedToken>;
}

/**
 * The reconciler's {@link TokenSource}: one fetch through the OAuth client, then — for a
 * rotated refresh token — persistence BEFORE the access token is handed back (SPEC §6). A
 * persistence failure fails the fetch, so the new access token is never published while the
 * refresh token it came with could be lost.
 */
export class Issuer implements TokenSource {
  private readonly client: TokenFetcher;

  constructor(client: TokenFetcher) {
    this.client = client;
  }

  async fetchToken(req: TokenRequest, ctx: FetchContext): Promise<IssuedToken> {
    const token = await this.client.fetchToken(req, { fallbackLifetimeSeconds: ctx.fallbackLifetimeSeconds });
    if (token.refreshToken && token.refreshToken !== req.refreshToken && ctx.persistRefreshToken) {
      await ctx.persistRefreshToken(token.refreshToken);
    }
    return token;
  }
}
