// Three `switchboard serve` edges on one throwaway Redis (and one Postgres) behave as one
// platform for unmodified pusher-js and pusher-http-node: see cluster-suite.mjs.
import { clusterTests } from './cluster-suite.mjs';

clusterTests('single');
