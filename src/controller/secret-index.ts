/**
 * Which NexarTokens reference which Secret (`namespace/name` of credentials and target
 * Secrets), so a Secret event wakes exactly the NexarTokens that care — and the Secret watch can
 * stay metadata-only with no store (SPEC §3.8: bounded memory).
 *
 * Memory: each Secret key is held once (a credentials Secret shared by a thousand NexarTokens is
 * one entry they all point to), and re-indexing a NexarToken whose references did not change —
 * every status echo — allocates nothing.
 */
export class SecretIndex {
  private readonly bySecret = new Map<string, SecretEntry>();
  private readonly byToken = new Map<string, SecretEntry[]>();

  /** Replaces the Secrets referenced by NexarToken `token` (all keys are `namespace/name`). */
  set(token: string, secrets: readonly string[]): void {
    const prev = this.byToken.get(token);
    if (prev && prev.length === secrets.length && prev.every((e, i) => e.key === secrets[i])) return;
    this.delete(token);
    const entries = secrets.map((s) => {
      let e = this.bySecret.get(s);
      if (!e) this.bySecret.set(s, (e = { key: s, tokens: new Set() }));
      e.tokens.add(token);
      return e;
    });
    this.byToken.set(token, entries);
  }

  /** Forgets NexarToken `token`. */
  delete(token: string): void {
    for (const e of this.byToken.get(token) ?? []) {
      e.tokens.delete(token);
      if (e.tokens.size === 0) this.bySecret.delete(e.key);
    }
    this.byToken.delete(token);
  }

  /** NexarTokens referencing Secret `secret`. */
  referencing(secret: string): readonly string[] {
    return [...(this.bySecret.get(secret)?.tokens ?? [])];
  }

  /** Number of Secrets referenced by at least one NexarToken. */
  get secrets(): number {
    return this.bySecret.size;
  }
}

/** One referenced Secret: its key (the one stored copy) and the NexarTokens referencing it. */
interface SecretEntry {
  key: string;
  tokens: Set<string>;
}
