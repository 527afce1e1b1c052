/**
 * Reading the kube-apiserver audit log written with `startControlPlane({ audit: true })`
 * (JSON lines of `audit.k8s.io/v1` Event, https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/).
 */
import { readFileSync } from "node:fs";

/** The fields of an `audit.k8s.io/v1` Event the tests look at. */
export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[] };
  objectRef?: { resource?: string; namespace?: string; name?: string; apiGroup?: string };
  responseStatus?: { code?: number };
  /** RFC 3339 with microseconds. */
  requestReceivedTimestamp: string;
}

/** Every audit event in the log at `path` so far (a missing file reads as none). */
export function readAudit(path: string): AuditEvent[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const out: AuditEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as AuditEvent);
    } catch {
      // a line being written right now
    }
  }
  return out;
}
