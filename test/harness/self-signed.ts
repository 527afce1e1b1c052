/**
 * A throw-away self-signed ECDSA certificate for 127.0.0.1 (openssl CLI, which the control-plane
 * harness needs too), for tests with loopback TLS servers and clients.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** PEM certificate and key, and where they were written. */
export interface SelfSigned {
  cert: Buffer;
  key: Buffer;
  certPath: string;
  keyPath: string;
}

/**
 * Writes `<name>.pem` and `<name>-key.pem` into `dir`: subject CN=`cn`, SAN IP:127.0.0.1, valid 1 day.
 * @throws Error when openssl fails.
 */
export function selfSigned(dir: string, name: string, cn = "127.0.0.1"): SelfSigned {
  const keyPath = join(dir, `${name}-key.pem`);
  const certPath = join(dir, `${name}.pem`);
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...["-keyout", keyPath, "-out", certPath, "-days", "1"],
      ...["-subj", `/CN=${cn}`, "-addext", "subjectAltName=IP:127.0.0.1"],
    ],
    { stdio: "ignore" },
  );
  return { cert: readFileSync(certPath), key: readFileSync(keyPath), certPath, keyPath };
}
