/**
 * The operator's fingerprint key: the HMAC-SHA256 key of the fingerprint annotation on every
 * target Secret (`fingerprintOf` in credentials.ts). The annotation is readable by anyone with
 * Secret-metadata access; keyed, it cannot be used to test guesses of a client secret offline.
 *
 * The key lives in a Secret in the operator's own namespace, created by the first replica that
 * starts and read by every other one, so the fingerprints agree across restarts and replicas.
 */
import { randomBytes } from "node:crypto";
import { LABEL_PART_OF, MANAGED_BY } from "../api/constants.ts";
import type { SecretsApi } from "../kube/secrets.ts";

/** Data key of the fingerprint key in its Secret. */
export const FINGERPRINT_KEY_DATA_KEY = "key";
/** Length of a new key, bytes (the SHA-256 block size is 64; RFC 2104 §3 asks for at least the output length, 32). */
export const FINGERPRINT_KEY_BYTES = 32;
/** Default name of the Secret holding it (`--fingerprint-key-secret`). */
export const DEFAULT_FINGERPRINT_KEY_SECRET = "nexar-token-operator-fingerprint-key";

/**
 * Reads the fingerprint key from Secret `namespace/name`, creating it with
 * {@link FINGERPRINT_KEY_BYTES} random bytes when it does not exist (a replica that loses the
 * create race reads the winner's key).
 * @returns the key bytes.
 * @throws Error naming the Secret (never its value) when it can be neither read nor created, or
 *   when it holds no usable key (missing, or shorter than {@link FINGERPRINT_KEY_BYTES} bytes).
 */
export async function loadFingerprintKey(secrets: SecretsApi, namespace: string, name: string): Promise<Buffer> {
  let secret;
  try {
    secret = await secrets.getOrCreate(namespace, name, () => ({
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name,
        namespace,
        labels: { [LABEL_PART_OF]: MANAGED_BY, "app.kubernetes.io/component": "fingerprint-key" },
      },
      type: "Opaque",
      data: { [FINGERPRINT_KEY_DATA_KEY]: randomBytes(FINGERPRINT_KEY_BYTES).toString("base64") },
    }));
  } catch (err) {
    throw new Error(
      `cannot read or create the fingerprint key Secret "${namespace}/${name}" (needs get and create on secrets in "${namespace}"): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const key = Buffer.from(secret.data?.[FINGERPRINT_KEY_DATA_KEY] ?? "", "base64");
  if (key.length < FINGERPRINT_KEY_BYTES) {
    throw new Error(
      `the fingerprint key Secret "${namespace}/${name}" has no key "${FINGERPRINT_KEY_DATA_KEY}" of at least ${FINGERPRINT_KEY_BYTES} bytes; delete it to have a new one created`,
    );
  }
  return key;
}
