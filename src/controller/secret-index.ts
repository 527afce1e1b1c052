/**
 * Which NexarTokens reference which Secret (`namespace/name` of credentials and target
 * Secrets), so a Secret event wakes exactly the NexarTokens that care — and the Secret watch can
 * stay metadata-only with no store (SPEC §3.8: bounded memory).
 */
export class SecretIndex {
  private readonly bySecret = new Map<string, Set<string>>();
  private readonly byToken = new Map<string, string[]>();

  /** Replaces the Secrets referenced by NexarToken `token` (all keys are `namespace/name`). */
  set(token: string, secrets: readonly string[]): void {
    this.delete(token);
    this.byToken.set(token, [...secrets]);
    for (const s of secrets) {
      let set = this.bySecret.get(s);
      if (!set) this.bySecret.set(s, (set = new Set()));
      set.add(token);
    }
  }

  /** Forgets NexarToken `token`. */
  delete(token: string): void {
    for (const s of this.byToken.get(token) ?? []) {
      const set = this.bySecret.get(s);
      set?.delete(token);
      if (set && set.size === 0) this.bySecret.delete(s);
    }
    this.byToken.delete(token);
  }

  /** NexarTokens referencing Secret `secret`. */
  referencing(secret: string): readonly string[] {
    return [...(this.bySecret.get(secret) ?? [])];
  }
}
