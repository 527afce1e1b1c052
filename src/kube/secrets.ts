/**
 * Secrets as the controller reads and writes them: a thin adapter over {@link KubeClient} that
 * knows the API paths and optimistic concurrency (Kubernetes API conventions, "Concurrency Control
 * and Consistency": every write carries the `resourceVersion` read; a 409 Conflict is answered by
 * reading again and re-deciding). What to write is decided by the caller's pure functions.
 */
import type { SecretWritePlan } from "../secrets/desired.ts";
import { isStatus, type KubeClient, type KubeList, type Secret } from "./client.ts";
import { secretPath } from "./paths.ts";

/** Attempts of one Secret write when the API server answers 409 Conflict (SPEC §3.7). */
export const SECRET_WRITE_ATTEMPTS = 3;

/** The write {@link SecretsApi.write} took: the plan's action and the Secret's resourceVersion afterwards. */
export interface SecretWriteResult {
  action: SecretWritePlan["action"];
  /** resourceVersion of the Secret as written (or as read, for `none`); undefined when unknown. */
  resourceVersion: string | undefined;
}

/** Secret reads and writes of one operator process. */
export class SecretsApi {
  readonly #kube: KubeClient;
  readonly #onWrite: ((action: "create" | "update" | "recreate") => void) | undefined;

  /** @param onWrite called after each successful create, update or recreate (metrics). */
  constructor(kube: KubeClient, onWrite?: (action: "create" | "update" | "recreate") => void) {
    this.#kube = kube;
    this.#onWrite = onWrite;
  }

  /** Secret `namespace/name`, or undefined when it does not exist (404). @throws KubeApiError on other errors. */
  get(namespace: string, name: string): Promise<Secret | undefined> {
    return this.#kube.getOrUndefined<Secret>(secretPath(namespace, name));
  }

  /**
   * Every Secret matching `labelSelector` in `namespace` (all namespaces when undefined), one
   * page of `limit` at a time, handed to `onPage`; stops early when `stop()` turns true.
   * @throws KubeApiError when a page cannot be read.
   */
  async list(
    namespace: string | undefined,
    labelSelector: string,
    onPage: (items: Secret[]) => void,
    o: { limit?: number; stop?: () => boolean } = {},
  ): Promise<void> {
    let cont: string | undefined;
    do {
      const page = await this.#kube.request<KubeList<Secret>>("GET", secretPath(namespace), {
        query: { labelSelector, limit: o.limit ?? 500, continue: cont },
      });
      onPage(page.items ?? []);
      cont = page.metadata.continue || undefined;
    } while (cont && !o.stop?.());
  }

  /**
   * Brings Secret `namespace/name` to what `plan(current)` says, starting from `current` (the
   * Secret as read; undefined when it does not exist). On 409 Conflict (someone wrote in between)
   * the Secret is read again and — if `owns(current)` still holds — re-planned and retried, up to
   * {@link SECRET_WRITE_ATTEMPTS} attempts in all; no sleep, no loop beyond that (the work queue's
   * rate limiter takes over).
   * @throws KubeApiError on other errors, on a persisting 409, or (the 409) when the re-read Secret
   *   no longer passes `owns` (the requeued reconcile then reports it).
   */
  async write(
    namespace: string,
    name: string,
    current: Secret | undefined,
    plan: (current: Secret | undefined) => SecretWritePlan,
    owns: (current: Secret | undefined) => boolean,
  ): Promise<SecretWriteResult> {
    for (let attempt = 1; ; attempt++) {
      const p = plan(current);
      try {
        const written = await this.#apply(namespace, name, p);
        return { action: p.action, resourceVersion: (written ?? current)?.metadata.resourceVersion };
      } catch (err) {
        if (!isStatus(err, 409) || attempt >= SECRET_WRITE_ATTEMPTS) throw err;
        current = await this.get(namespace, name);
        if (!owns(current)) throw err;
      }
    }
  }

  /**
   * Secret `namespace/name` as it is, or `make()` created when there is none (404). When another
   * process creates it first (409 AlreadyExists), the winner's Secret is read and returned, so
   * every replica ends with the same one.
   * @throws KubeApiError when it can be neither read nor created (e.g. 403 Forbidden).
   */
  async getOrCreate(namespace: string, name: string, make: () => Secret): Promise<Secret> {
    const found = await this.get(namespace, name);
    if (found) return found;
    try {
      return await this.#kube.request<Secret>("POST", secretPath(namespace), { body: make() });
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
      return await this.#kube.request<Secret>("GET", secretPath(namespace, name));
    }
  }

  /**
   * A JSON merge patch (RFC 7386) of Secret `namespace/name` with the resourceVersion of `read`
   * as precondition. `next(read)` gives the patch, or a final answer without writing; on 409
   * Conflict the Secret is read again and `next` asked again, up to `attempts` attempts.
   * @returns `next`'s final answer, or `"patched"` once a patch went through.
   * @throws KubeApiError on other errors (e.g. 404 when the Secret was deleted), or after
   *   `attempts` conflicts.
   */
  async patchGuarded<R>(
    namespace: string,
    name: string,
    read: Secret,
    next: (
      read: Secret,
    ) => { patch: { metadata?: Record<string, unknown>; data?: Record<string, string> } } | { done: R },
    attempts: number,
  ): Promise<R | "patched"> {
    const path = secretPath(namespace, name);
    for (let attempt = 1; ; attempt++) {
      const step = next(read);
      if ("done" in step) return step.done;
      const rv = read.metadata.resourceVersion;
      try {
        await this.#kube.request("PATCH", path, {
          body: { ...step.patch, metadata: { ...step.patch.metadata, ...(rv ? { resourceVersion: rv } : {}) } },
          contentType: "application/merge-patch+json",
        });
        return "patched";
      } catch (err) {
        if (!isStatus(err, 409) || attempt >= attempts) throw err;
        read = await this.#kube.request<Secret>("GET", path);
      }
    }
  }

  /** Applies one plan; resolves with the Secret as the API server returned it (undefined for "none"). */
  async #apply(namespace: string, name: string, plan: SecretWritePlan): Promise<Secret | undefined> {
    const collection = secretPath(namespace);
    const path = secretPath(namespace, name);
    switch (plan.action) {
      case "none":
        return undefined;
      case "create": {
        const out = await this.#kube.request<Secret>("POST", collection, { body: plan.secret });
        this.#onWrite?.("create");
        return out;
      }
      case "update": {
        const out = await this.#kube.request<Secret>("PUT", path, { body: plan.secret });
        this.#onWrite?.("update");
        return out;
      }
      case "recreate": {
        // `type` is immutable: delete (preconditioned on uid + resourceVersion) and create again.
        const { uid, resourceVersion } = plan.secret.metadata;
        await this.#kube.request("DELETE", path, {
          body: { kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid, resourceVersion } },
        });
        const { labels, annotations, ownerReferences } = plan.secret.metadata;
        const out = await this.#kube.request<Secret>("POST", collection, {
          body: { ...plan.secret, metadata: { name, namespace, labels, annotations, ownerReferences } },
        });
        this.#onWrite?.("recreate");
        return out;
      }
    }
  }
}
