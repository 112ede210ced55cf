// A published port: what both bridge and user-mode networks take in `publish`.
/** A port of the sandbox made reachable on the host. */
export interface PublishSpec {
  /** Host port (1..65535). */
  host: number;
  /** Port inside the sandbox (1..65535). */
  container: number;
  /** Default 'tcp'. */
  protocol?: 'tcp' | 'udp';
  /** Host address to bind; default every local address (0.0.0.0), IPv4 only. */
  hostIp?: string;
}
