// Networking: rtnetlink links, bridges, addressing, NAT and published ports.
export { VethPair, type VethOptions } from './veth.js';
export { Bridge, type BridgeOptions } from './bridge.js';
export {
  listLinks, getLink, setLink, deleteLink, listAddresses, addAddress, removeAddress, addRoute, deleteRoute, listRoutes,
  type NetnsRef, type LinkInfo, type AddressInfo, type RouteInfo, type LinkChanges, type RouteSpec,
} from './link.js';
export {
  validateNetworkOption, prepareSandboxNetwork, networkSettled, userNetworkFiles, DEFAULT_BRIDGE, DEFAULT_SUBNET,
  type NetworkOption, type BridgeNetworkOption, type PublishSpec, type PreparedNetwork, type NetHandoff, type PrepareContext,
} from './network.js';
export { TcpProxy } from './proxy.js';
export { nftUnavailableReason, nftListPublished, NFT_TABLE } from './nft.js';
export { listIpam, ipamDir } from './ipam.js';
export { sweepNetwork, type NetworkSweepReport, type NetworkSweepOptions } from './gc.js';
export { Vxlan, type VxlanOptions } from './vxlan.js';
export { type UserNetworkOption } from './usernet.js';
export { sendFds, recvFds, type ReceivedFds, type RecvFdsOptions } from './fdpass.js';
export {
  type EgressNetworkOption, type EgressRule, type EgressRequest, type EgressInjection, type EgressLookup, type DenyReason,
} from './egress/policy.js';
export { EGRESS_PORTS, type EgressHostStats, type EgressDeniedEvent, type EgressUpdate } from './egress/service.js';
