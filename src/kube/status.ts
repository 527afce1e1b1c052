/**
 * The NexarToken status subresource as the controller writes it: a thin adapter over
 * {@link KubeClient}. A JSON merge patch (RFC 7386) of `status` needs no resourceVersion (it sets
 * only the fields it names, and only the operator writes status), so it has no 409 to answer.
 */
import type { NexarToken } from "../api/types.ts";
import { isStatus, type KubeClient } from "./client.ts";
import { nexarTokenStatusPath } from "./paths.ts";

/** Status writes of one operator process. */
export class StatusApi {
  readonly #kube: KubeClient;

  constructor(kube: KubeClient) {
    this.#kube = kube;
  }

  /**
   * Merge-patches the status of NexarToken `namespace/name` with `patch` (top-level status
   * fields; `null` removes one).
   * @returns the NexarToken as the API server answered, or undefined when it is gone (404).
   * @throws KubeApiError on other errors.
   */
  async patch(namespace: string, name: string, patch: Record<string, unknown>): Promise<NexarToken | undefined> {
    try {
      return await this.#kube.request<NexarToken>("PATCH", nexarTokenStatusPath(namespace, name), {
        body: { status: patch },
        contentType: "application/merge-patch+json",
      });
    } catch (err) {
      if (isStatus(err, 404)) return undefined; // deleted meanwhile
      throw err;
    }
  }
}
