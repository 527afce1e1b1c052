import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { secretPath } from "../kube/paths.ts";

/** Attempts of {@link persistRefreshToken} on 409 Conflict before giving up. */
const MAX_ATTEMPTS = 5;

/**
 * Stores a rotated refresh token (RFC 6749 §6: the server may issue a new refresh token and
 * invalidate the old one) in the credentials Secret, BEFORE the new access token is published
 * (SPEC §6), so a refresh token is never lost.
 *
 * The write is a JSON merge patch of `data[key]` carrying the `resourceVersion` that was read with
 * the refresh token just used (optimistic concurrency). On 409 Conflict the Secret is re-read:
 * - if `data[key]` still holds the refresh token that was used, only something else changed, so
 *   the patch is retried with the new resourceVersion;
 * - if it holds a different value, someone (e.g. a new `login`) replaced it meanwhile: theirs is
 *   newer than ours and is kept; the function returns `"superseded"`.
 *
 * @returns `"stored"` or `"superseded"`.
 * @throws KubeApiError on other API errors, or after {@link MAX_ATTEMPTS} conflicts. The message
 *   never contains a token.
 */
export async function persistRefreshToken(
  kube: KubeClient,
  target: { namespace: string; name: string; key: string },
  used: { refreshToken: string; resourceVersion: string | undefined },
  rotated: string,
): Promise<"stored" | "superseded"> {
  const path = secretPath(target.namespace, target.name);
  let rv = used.resourceVersion;
  for (let attempt = 1; ; attempt++) {
    try {
      await kube.request("PATCH", path, {
        body: {
          metadata: rv ? { resourceVersion: rv } : {},
          data: { [target.key]: Buffer.from(rotated, "utf8").toString("base64") },
        },
        contentType: "application/merge-patch+json",
      });
      return "stored";
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 409 || attempt >= MAX_ATTEMPTS) throw err;
      const now = await kube.request<Secret>("GET", path);
      const current = now.data?.[target.key];
      const value = current === undefined ? undefined : Buffer.from(current, "base64").toString("utf8").trim();
      if (value !== used.refreshToken) return "superseded";
      rv = now.metadata.resourceVersion;
    }
  }
}
