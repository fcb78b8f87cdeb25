// The cluster test of cluster-suite.mjs on a local three-master Redis Cluster
// (`--broker redis+cluster://…`: sharded pub/sub, keys spread over the shards by hash tag).
import { clusterTests } from './cluster-suite.mjs';

clusterTests('cluster');
