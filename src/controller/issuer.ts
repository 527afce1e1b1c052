/**
 * Transitional re-export for src/cli/run.ts, which still imports the issuer from here. The issuer
 * lives in src/issuance/issuer.ts; delete this file once run.ts imports it from there.
 */
export { Issuer } from "../issuance/issuer.ts";
