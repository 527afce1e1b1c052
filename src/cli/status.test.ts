import { describe, it, expect } from "vitest";
import type { NexarToken } from "../api/types.ts";
import { formatStatusTable, statusRow } from "./status.ts";

function nt(ns: string, name: string, status?: NexarToken["status"]): NexarToken {
  return {
    apiVersion: "nexar-operator.io/v1alpha1",
    kind: "NexarToken",
    metadata: { namespace: ns, name },
    spec: { scopes: ["supply.domain"], credentialsSecretRef: { name: "x" } },
    status,
  } as NexarToken;
}

describe("status table", () => {
  it("has the kubectl-style header, sorted rows and '-' for unset fields", () => {
    const rows = [
      statusRow(
        nt("parts", "supply", {
          expiresAt: "2026-12-01T10:00:00Z",
          renewalTime: "2026-12-01T02:00:00Z",
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "TokenIssued",
              message: "",
              lastTransitionTime: "2026-11-30T00:00:00Z",
            },
          ],
        }),
      ),
      statusRow(nt("design", "new")),
    ];
    expect(formatStatusTable(rows)).toBe(
      [
        "NAMESPACE   NAME     READY   REASON        EXPIRES                RENEWAL",
        "design      new      -       -             -                      -",
        "parts       supply   True    TokenIssued   2026-12-01T10:00:00Z   2026-12-01T02:00:00Z",
        "",
      ].join("\n"),
    );
  });
});
