"""A replicated block-storage cluster in one zone, with re-mirroring after a partition.

The model follows the EBS cluster of the AWS report of 29 April 2011: volumes keep a primary
and a replica on two different nodes; a node that loses its peer "must find a new node to which
it can replicate its data (this is called re-mirroring)", searching the cluster "for another node
with enough available server space"; and "all nodes that have copies of the data hold onto the
data until they can confirm that another node has taken ownership", so the slot of the lost copy
stays taken. While a volume re-mirrors its I/O is blocked: it is "stuck".

The cluster advances in fixed steps (``step`` seconds, one kernel event each) and keeps
per-node free slots and per-volume copy locations, but treats the search itself in aggregate:
the cluster serves at most ``search_capacity`` search attempts per second, every attempt beyond
that is wasted, and a served attempt finds a slot only while free slots exist. That keeps a
storm of thousands of searching volumes at a few microseconds per volume per step.

Searching volumes follow one of two retry styles:

* **tight loop** (``backoff=None``): every searching volume searches every ``search_interval``
  seconds, however often it failed -- the 2011 behaviour ("did not back off aggressively enough
  when they could not find space, but instead, continued to search repeatedly");
* **backoff**: a :class:`~stormproof.policies.backoff.Backoff` schedule (for instance
  :class:`~stormproof.policies.backoff.Exponential` with full jitter) spaces each volume's
  searches out, drawing jitter from the cluster's own random stream.

Nodes may crash from a race that fires "with a very low probability ... when they were
concurrently closing a large number of requests for replication": each search attempt crashes a
node with probability ``race_crash_per_attempt``. A crashed node's healthy volumes lose a copy
and start re-mirroring; its free slots are gone (the cluster "does not reuse the failed node
until every data replica is successfully re-mirrored"). A volume that had already lost one copy
and whose surviving copy was on the crashed node cannot re-mirror at all: it stays stuck (counted
in :attr:`StorageCluster.data_lost`), as the report's last 2.2 % of volumes did until they were
restored from snapshots and forensics.

:meth:`StorageCluster.add_capacity` brings new servers' slots in over a period (the report's
day 2: "At about 02:00AM PDT on April 22nd, the team successfully started adding significant
amounts of new capacity").

Random streams (named, so policies compare on common random numbers): ``storage.placement``
(where copies live), ``storage.trigger`` (which nodes are isolated, and whether a volume could
reconnect to its previous replica), ``storage.deletes`` (slots freed by customers deleting
volumes), ``storage.capacity`` (where added slots go); policy-dependent draws use
``storage.search`` and ``storage.race``.

:class:`DatabaseFleet` puts database instances (the report's RDS) on a cluster's volumes: each
instance uses several volumes and is impacted while any of them is stuck. Single-AZ instances
are unavailable while impacted; multi-AZ instances fail over to their secondary in another zone
the first time they are impacted, except those hit by the failover bug, which stay unavailable
while impacted. Which volumes an instance uses, which instances are multi-AZ (``rds.placement``)
and which would hit the bug (``rds.failover``) are drawn when the fleet is built, from streams
no policy draws from.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.backoff import Backoff
from stormproof.sim.kernel import Simulation
from stormproof.sim.stats import poisson_draw

__all__ = ["DatabaseFleet", "StorageCluster"]

_HEALTHY = 0
_ISOLATED = 1  # lost its peer, waiting for the network to come back
_RECONNECTING = 2  # trying its previous replica first
_SEARCHING = 3  # re-mirroring: looking for a free slot
_DATA_LOST = 4  # the surviving copy was on a node that crashed: stuck until restored by hand


class StorageCluster:
    """``nodes`` storage nodes holding ``volumes`` volumes (two copies each) in one zone.

    Args:
        sim: the simulation.
        nodes: number of storage nodes.
        volumes: number of volumes; each has two copies on two different nodes.
        free_fraction: the share of all slots that is free before the trigger, spread evenly
            over the nodes.
        step: seconds between cluster steps.
        search_interval: seconds between searches of a volume in the tight loop (and the
            base of nothing else: a backoff schedule sets its own delays).
        search_capacity: search attempts per second the cluster can serve; attempts beyond it
            are wasted.
        race_crash_per_attempt: probability that one search attempt crashes a node.
        freed_slots_per_hour: slots freed by customers deleting volumes (Poisson).
        backoff: ``None`` for the tight loop, else the schedule between a volume's searches.
        reconnect: try the previous replica first when the network comes back.
        reconnect_success: probability that a volume's previous replica is still usable.
        reconnect_time: seconds a reconnection takes.

    A volume counts as stuck while it re-mirrors (searches for a slot), sampled at the end of
    each step; a volume reconnecting to its previous replica is not counted (a failover of
    ``reconnect_time`` seconds, no longer than a step by default).

    Call :meth:`start` once, then :meth:`isolate` at the trigger; read :attr:`stuck` (volumes
    stuck now), :attr:`free_total` (free slots on live nodes) and the counters.
    """

    def __init__(
        self,
        sim: Simulation,
        *,
        nodes: int,
        volumes: int,
        free_fraction: float,
        step: float = 10.0,
        search_interval: float = 1.0,
        search_capacity: float = 200.0,
        race_crash_per_attempt: float = 0.0,
        freed_slots_per_hour: float = 0.0,
        backoff: Backoff | None = None,
        reconnect: bool = False,
        reconnect_success: float = 1.0,
        reconnect_time: float = 30.0,
    ) -> None:
        int_at_least("nodes", nodes, 2)
        int_at_least("volumes", volumes, 1)
        finite_at_least("free_fraction", free_fraction, 0.0)
        if free_fraction >= 1.0:
            raise ConfigError("free_fraction", "must be < 1", free_fraction)
        finite_above("step", step, 0.0)
        finite_above("search_interval", search_interval, 0.0)
        finite_above("search_capacity", search_capacity, 0.0)
        finite_at_least("race_crash_per_attempt", race_crash_per_attempt, 0.0)
        if race_crash_per_attempt > 1.0:
            raise ConfigError("race_crash_per_attempt", "must be <= 1", race_crash_per_attempt)
        finite_at_least("freed_slots_per_hour", freed_slots_per_hour, 0.0)
        finite_at_least("reconnect_success", reconnect_success, 0.0)
        if reconnect_success > 1.0:
            raise ConfigError("reconnect_success", "must be <= 1", reconnect_success)
        finite_at_least("reconnect_time", reconnect_time, 0.0)
        self.sim = sim
        self.nodes = nodes
        self.volumes = volumes
        self.step = float(step)
        self.search_interval = float(search_interval)
        self.search_capacity = float(search_capacity)
        self.race_crash_per_attempt = float(race_crash_per_attempt)
        self.freed_slots_per_hour = float(freed_slots_per_hour)
        self.backoff = backoff
        self.reconnect = reconnect
        self.reconnect_success = float(reconnect_success)
        self.reconnect_time = float(reconnect_time)

        placement = sim.rng("storage.placement")
        order = list(range(nodes))
        placement.shuffle(order)
        # Copy A round-robin over a shuffled node order, copy B on another node at random.
        self.copy_a = [order[v % nodes] for v in range(volumes)]
        self.copy_b = [(a + 1 + placement.randrange(nodes - 1)) % nodes for a in self.copy_a]
        self.on_node: list[list[int]] = [[] for _ in range(nodes)]
        for v in range(volumes):
            self.on_node[self.copy_a[v]].append(v)
            self.on_node[self.copy_b[v]].append(v)
        # Free slots spread evenly: free / (used + free) = free_fraction overall.
        free_slots = round(2 * volumes * free_fraction / (1.0 - free_fraction))
        self.free = [free_slots // nodes + (1 if n < free_slots % nodes else 0) for n in order]
        self.free_total = free_slots
        self.free_at_start = free_slots
        self.alive = [True] * nodes
        self.isolated = [False] * nodes
        self.state = [_HEALTHY] * volumes
        self.lost = [-1] * volumes  # which copy is lost: 0 (a) or 1 (b)
        self.can_reconnect = [False] * volumes
        self.retries = [0] * volumes
        self.last_delay: list[float | None] = [None] * volumes

        self.hot: deque[int] = deque()  # tight-loop searchers
        self.due: dict[int, list[int]] = {}  # step index -> backoff searchers due then
        self.reconnecting: dict[int, list[int]] = {}  # step index -> reconnects finishing
        self.stuck = 0
        self.peak_stuck = 0
        self.ever_affected = 0
        self.attempts = 0.0
        self.remirrored = 0
        self.reconnected = 0
        self.crashed_nodes = 0
        self.data_lost = 0
        self.added_slots = 0
        self.last_new_stuck = math.nan
        #: Volumes whose stuck state may have changed since the last :meth:`drain_changed`
        #: (``None`` until :meth:`watch_volumes`).
        self._changed: list[int] | None = None
        self.searching_enabled_interval = self.search_interval
        #: Called as ``on_step(now, stuck, free_total)`` at the end of every step.
        self.on_step: Callable[[float, int, int], None] | None = None
        self._index = 0
        self._restored = False
        self._pending_attempts = 0.0
        self._search_rng = sim.rng("storage.search")
        self._race_rng = sim.rng("storage.race")
        self._delete_rng = sim.rng("storage.deletes")
        self._trigger_rng = sim.rng("storage.trigger")
        self._capacity_rng = sim.rng("storage.capacity")
        self._capacity_per_step = 0.0
        self._capacity_until = -math.inf

    # -- driving ----------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first step now."""
        self.sim.schedule(0.0, self._tick)

    def isolate(self, fraction: float, duration: float) -> None:
        """Cut ``fraction`` of the nodes off now; the network comes back ``duration`` s later.

        Every volume with a copy on a cut-off node loses its peer. When the network returns,
        those volumes reconnect (if :attr:`reconnect` and the previous replica is usable) or
        re-mirror. The draws come from ``storage.trigger`` only, for every policy alike.
        """
        finite_at_least("fraction", fraction, 0.0)
        if fraction > 1.0:
            raise ConfigError("fraction", "must be <= 1", fraction)
        finite_at_least("duration", duration, 0.0)
        rng = self._trigger_rng
        count = round(self.nodes * fraction)
        for node in rng.sample(range(self.nodes), count):
            self.isolated[node] = True
        for v in range(self.volumes):
            usable = rng.random() < self.reconnect_success  # drawn for every volume: CRN
            a_cut, b_cut = self.isolated[self.copy_a[v]], self.isolated[self.copy_b[v]]
            if a_cut or b_cut:
                self.state[v] = _ISOLATED
                # The copy on the cut-off node is the one replaced (either, if both are).
                self.lost[v] = 0 if a_cut else 1
                self.can_reconnect[v] = usable
                self.ever_affected += 1
        self.sim.schedule(duration, self._restore)

    def throttle_searches(self, interval: float) -> None:
        """Operators stop futile searching: tight-loop searchers now search every ``interval`` s.

        ``math.inf`` stops them altogether. The 2011 report, 11:30 AM: "prevent EBS servers in
        the degraded EBS cluster from futilely contacting other servers"; a later call with a
        finite interval is day 2's "changes to their negotiation throttles to allow negotiation
        to occur with the newly-built servers".
        """
        if not interval > 0.0:  # also refuses NaN; inf is allowed
            raise ConfigError("interval", "must be > 0 (math.inf stops searching)", interval)
        self.searching_enabled_interval = float(interval)

    def add_capacity(self, slots_per_hour: float, duration: float) -> None:
        """From now, add free slots at ``slots_per_hour`` (Poisson) for ``duration`` seconds.

        New servers installed in the cluster; the slots go to random live nodes.
        """
        finite_at_least("slots_per_hour", slots_per_hour, 0.0)
        finite_at_least("duration", duration, 0.0)
        self._capacity_per_step = slots_per_hour * self.step / 3600.0
        self._capacity_until = self.sim.now() + duration

    def watch_volumes(self) -> None:
        """Start recording which volumes become stuck or unstuck (see :meth:`drain_changed`)."""
        if self._changed is None:
            self._changed = []

    def drain_changed(self) -> list[int]:
        """Volumes whose stuck state may have changed since the last call (needs watching)."""
        changed = self._changed
        if not changed:
            return []
        self._changed = []
        return changed

    def is_stuck(self, volume: int) -> bool:
        """Whether ``volume`` is stuck now (re-mirroring, or its only data on a crashed node)."""
        state = self.state[volume]
        return state in (_SEARCHING, _DATA_LOST)

    @property
    def exhausted(self) -> bool:
        """Whether no free slot is left on a live node (create-volume calls cannot complete)."""
        return self.free_total <= 0

    # -- the model --------------------------------------------------------------------------

    def _restore(self) -> None:
        self._restored = True
        later = self._index + max(1, math.ceil(self.reconnect_time / self.step))
        for v in range(self.volumes):
            if self.state[v] != _ISOLATED:
                continue
            if self.reconnect:
                self.state[v] = _RECONNECTING
                self.reconnecting.setdefault(later, []).append(v)
            else:
                self._begin_search(v, first=True)
                self._became_stuck(v)

    def _became_stuck(self, v: int) -> None:
        self.stuck += 1
        self.last_new_stuck = self.sim.now()
        if self._changed is not None:
            self._changed.append(v)

    def _begin_search(self, v: int, *, first: bool) -> None:
        self.state[v] = _SEARCHING
        self.retries[v] = 0
        self.last_delay[v] = None
        if self.backoff is None:
            self.hot.append(v)
        else:
            self.due.setdefault(self._index + (0 if first else 1), []).append(v)

    def _tick(self) -> None:
        index = self._index
        self._free_deleted_slots()
        if self.sim.now() < self._capacity_until:
            self._add_slots()
        self._race_crashes()
        for v in self.reconnecting.pop(index, ()):
            if self.state[v] != _RECONNECTING:
                continue
            peer = self._surviving(v)
            lost = self.copy_b[v] if self.lost[v] == 1 else self.copy_a[v]
            if not self.alive[peer]:
                self._lose_data(v)
            elif self.can_reconnect[v] and self.alive[lost]:
                self.state[v] = _HEALTHY
                self.reconnected += 1
            else:
                self._begin_search(v, first=True)
                self._became_stuck(v)
        if self._restored:
            self._search()
        # Sampled at the end of a step: a re-mirror that succeeds within the step (milliseconds
        # in a healthy cluster) is not counted as stuck.
        if self.stuck > self.peak_stuck:
            self.peak_stuck = self.stuck
        if self.on_step is not None:
            self.on_step(self.sim.now(), self.stuck, self.free_total)
        self._index = index + 1
        self.sim.schedule(self.step, self._tick)

    def _free_deleted_slots(self) -> None:
        self._scatter_slots(self._delete_rng, self.freed_slots_per_hour * self.step / 3600.0)

    def _add_slots(self) -> None:
        self.added_slots += self._scatter_slots(self._capacity_rng, self._capacity_per_step)

    def _scatter_slots(self, rng: random.Random, mean: float) -> int:
        """Free a Poisson(``mean``) number of slots on random nodes; how many were on live ones."""
        freed = 0
        for _ in range(poisson_draw(rng, mean)):
            node = rng.randrange(self.nodes)
            if self.alive[node]:
                self.free[node] += 1
                freed += 1
        self.free_total += freed
        return freed

    def _surviving(self, v: int) -> int:
        """The node holding volume ``v``'s copy that was not lost."""
        return self.copy_b[v] if self.lost[v] == 0 else self.copy_a[v]

    def _lose_data(self, v: int) -> None:
        """Volume ``v``'s surviving copy is gone: stuck for good (counted once as stuck)."""
        if self.state[v] != _SEARCHING:
            self._became_stuck(v)
        self.state[v] = _DATA_LOST
        self.data_lost += 1

    def _race_crashes(self) -> None:
        # Crashes caused by the previous step's search attempts.
        mean = self._pending_attempts * self.race_crash_per_attempt
        self._pending_attempts = 0.0
        rng = self._race_rng
        for _ in range(poisson_draw(rng, mean)):
            node = rng.randrange(self.nodes)
            if self.alive[node]:
                self._crash(node)

    def _crash(self, node: int) -> None:
        self.alive[node] = False
        self.crashed_nodes += 1
        self.free_total -= self.free[node]
        self.free[node] = 0
        for v in self.on_node[node]:
            state = self.state[v]
            if state == _DATA_LOST:
                continue
            if state != _HEALTHY:
                if self._surviving(v) == node:
                    self._lose_data(v)
                continue
            if self.copy_a[v] == node:
                self.lost[v] = 0
            elif self.copy_b[v] == node:
                self.lost[v] = 1
            else:
                continue  # the volume has moved off this node since
            self.ever_affected += 1
            self._begin_search(v, first=False)
            self._became_stuck(v)

    def _search(self) -> None:
        step = self.step
        per_hot = step / self.searching_enabled_interval
        due = self.due.pop(self._index, [])
        attempts = len(self.hot) * per_hot + len(due)
        if attempts <= 0.0:
            return
        self.attempts += attempts
        self._pending_attempts = attempts
        served = min(1.0, self.search_capacity * step / attempts)
        rng = self._search_rng
        if self.hot and self.free_total > 0 and per_hot > 0.0:
            # Chance that at least one of a tight-loop volume's attempts this step is served.
            p_hot = 1.0 - (1.0 - served) ** per_hot if per_hot >= 1.0 else served * per_hot
            for _ in range(len(self.hot)):
                if self.free_total <= 0:
                    break
                v = self.hot.popleft()
                if self.state[v] != _SEARCHING:
                    continue  # its data was lost since: it stops searching
                if rng.random() < p_hot:
                    self._place(v)
                else:
                    self.hot.append(v)
        backoff = self.backoff
        if backoff is None:
            return
        for v in due:
            if self.state[v] != _SEARCHING:
                continue
            if self.free_total > 0 and rng.random() < served:
                self._place(v)
                continue
            retry = self.retries[v] = self.retries[v] + 1
            delay = backoff.delay(retry, self.last_delay[v], rng)
            self.last_delay[v] = delay
            later = self._index + max(1, math.ceil(delay / step))
            self.due.setdefault(later, []).append(v)

    def _place(self, v: int) -> None:
        """Put volume ``v``'s new copy on a live node with a free slot (one exists)."""
        rng = self._search_rng
        keep = self._surviving(v)
        start = rng.randrange(self.nodes)
        for offset in range(self.nodes):
            node = (start + offset) % self.nodes
            if self.free[node] > 0 and self.alive[node] and node != keep:
                break
        else:  # the only free slots are on the node holding the surviving copy
            if self.backoff is None:
                self.hot.append(v)
            else:
                self.due.setdefault(self._index + 1, []).append(v)
            return
        self.free[node] -= 1
        self.free_total -= 1
        if self.lost[v] == 0:
            self.copy_a[v] = node
        else:
            self.copy_b[v] = node
        self.on_node[node].append(v)
        self.state[v] = _HEALTHY
        self.stuck -= 1
        self.remirrored += 1
        if self._changed is not None:
            self._changed.append(v)


class DatabaseFleet:
    """Database instances on a :class:`StorageCluster`'s volumes (the report's RDS).

    Args:
        cluster: the storage cluster of the instances' zone (their primary's zone).
        instances: number of database instances.
        volumes_per_instance: volumes each instance uses, distinct, drawn at random from the
            cluster's volumes (instances may share a volume: the fleet samples the zone's
            volume population rather than partitioning it).
        multi_az_share: share of instances that are multi-AZ.
        failover_bug: probability that a multi-AZ instance does not fail over when impacted.

    An instance is *impacted* while any of its volumes is stuck. Call :meth:`update` at the end
    of each cluster step (it reads the volumes the cluster reports as changed); read
    :attr:`unavailable`, :attr:`peak_unavailable`, :attr:`peak_single_az_impacted` and the
    multi-AZ counters.
    """

    def __init__(
        self,
        cluster: StorageCluster,
        *,
        instances: int,
        volumes_per_instance: int,
        multi_az_share: float,
        failover_bug: float,
    ) -> None:
        int_at_least("instances", instances, 0)
        int_at_least("volumes_per_instance", volumes_per_instance, 1)
        if volumes_per_instance > cluster.volumes:
            raise ConfigError(
                "volumes_per_instance",
                f"must be <= the cluster's volumes ({cluster.volumes})",
                volumes_per_instance,
            )
        for name, value in (("multi_az_share", multi_az_share), ("failover_bug", failover_bug)):
            finite_at_least(name, value, 0.0)
            if value > 1.0:
                raise ConfigError(name, "must be <= 1", value)
        self.cluster = cluster
        self.instances = instances
        placement = cluster.sim.rng("rds.placement")
        failover = cluster.sim.rng("rds.failover")
        self.multi_az = [placement.random() < multi_az_share for _ in range(instances)]
        # Drawn for every instance, multi-AZ or not, so the draws do not depend on the share.
        self.bugged = [failover.random() < failover_bug for _ in range(instances)]
        self.on_volume: dict[int, list[int]] = {}
        for i in range(instances):
            for v in placement.sample(range(cluster.volumes), volumes_per_instance):
                self.on_volume.setdefault(v, []).append(i)
        self.single_az_total = instances - sum(self.multi_az)
        self.multi_az_total = instances - self.single_az_total
        self._volume_stuck: dict[int, bool] = {}
        self._stuck_volumes = [0] * instances
        self._failed_over = [False] * instances
        self._seen: set[int] = set()  # multi-AZ instances impacted at least once
        self.impacted_single_az = 0
        self.peak_single_az_impacted = 0
        self.multi_az_impacted = 0  # multi-AZ instances impacted at least once
        self.multi_az_no_failover = 0  # of those, how many hit the failover bug
        self.unavailable = 0
        self.peak_unavailable = 0
        cluster.watch_volumes()

    def update(self) -> None:
        """Apply the volumes that became stuck or unstuck since the last update."""
        cluster = self.cluster
        for v in cluster.drain_changed():
            users = self.on_volume.get(v)
            if users is None:
                continue
            stuck = cluster.is_stuck(v)
            if self._volume_stuck.get(v, False) == stuck:
                continue  # stuck and unstuck again within the step, or repeated
            self._volume_stuck[v] = stuck
            for i in users:
                before = self._stuck_volumes[i]
                after = self._stuck_volumes[i] = before + (1 if stuck else -1)
                if before == 0 and after == 1:
                    self._impacted(i)
                elif before == 1 and after == 0:
                    self._recovered(i)
        if self.unavailable > self.peak_unavailable:
            self.peak_unavailable = self.unavailable
        if self.impacted_single_az > self.peak_single_az_impacted:
            self.peak_single_az_impacted = self.impacted_single_az

    def _impacted(self, i: int) -> None:
        if not self.multi_az[i]:
            self.impacted_single_az += 1
            self.unavailable += 1
            return
        if not self._failed_over[i] and i not in self._seen:
            self._seen.add(i)
            self.multi_az_impacted += 1
            if self.bugged[i]:
                self.multi_az_no_failover += 1
            else:
                self._failed_over[i] = True  # now served from the other zone
        if not self._failed_over[i]:
            self.unavailable += 1

    def _recovered(self, i: int) -> None:
        if not self.multi_az[i]:
            self.impacted_single_az -= 1
            self.unavailable -= 1
        elif not self._failed_over[i]:
            self.unavailable -= 1
