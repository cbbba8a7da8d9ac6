# Writes docs/grafana/omega.json (run from the repository root: python3 docs/grafana/generate.py). MetricsScrapeTests checks
# that every query in it names a metric present in a real scrape of omega serve.
import json
panels=[]
def panel(title, unit, exprs, x, y, w=12, h=8, desc=""):
    targets=[]
    for i,(e,legend) in enumerate(exprs):
        targets.append({"datasource":{"type":"prometheus","uid":"${datasource}"},"expr":e,"legendFormat":legend,"refId":chr(65+i)})
    p={"id":len(panels)+1,"type":"timeseries","title":title,"description":desc,
       "datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"x":x,"y":y,"w":w,"h":h},
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "options":{"legend":{"displayMode":"table","placement":"right","calcs":["lastNotNull","max"]},"tooltip":{"mode":"multi"}},
       "targets":targets}
    if unit=="s":
        p["fieldConfig"]["defaults"]["custom"]={"scaleDistribution":{"type":"log","log":10}}
    panels.append(p)
def s(extra=""):
    return '{instance=~"$instance"' + ("," + extra if extra else "") + '}'
def q(level):
    return "p" + ("99.9" if level == 0.999 else str(int(level * 100)))
row=0
panel("Placements per second","ops",[("sum by (scheduler) (rate(omega_sched_placements_total"+s()+"[1m]))","{{scheduler}}")],0,row,desc="Tasks bound per second, by scheduler kind.")
panel("Conflict fraction","percentunit",[("sum by (scheduler) (rate(omega_sched_transactions_total"+s('outcome="conflicted"')+"[5m])) / sum by (scheduler) (rate(omega_sched_transactions_total"+s()+"[5m]))","{{scheduler}}")],12,row,desc="Conflicted transactions over all transactions (the Omega paper's conflict fraction).")
row+=8
for i,(name,title) in enumerate([("omega_sched_commit_duration_seconds","Commit latency"),("omega_sched_decision_duration_seconds","Decision latency")]):
    panel(title,"s",[("histogram_quantile(%s, sum by (le, scheduler) (rate(%s_bucket%s[5m])))" % (l,name,s()), q(l)+" {{scheduler}}") for l in (0.5,0.99)],12*i,row)
row+=8
panel("Job placement latency (submit to all bound)","s",[("histogram_quantile(%s, sum by (le, scheduler) (rate(omega_sched_job_placement_duration_seconds_bucket%s[5m])))" % (l,s()), q(l)+" {{scheduler}}") for l in (0.5,0.99)],0,row)
panel("Journal group commit (durability)","s",[("histogram_quantile(%s, sum by (le) (rate(omega_storage_group_commit_duration_seconds_bucket%s[5m])))" % (l,s()), q(l)) for l in (0.5,0.99)]
      +[("sum(rate(omega_storage_group_commit_duration_seconds_sum"+s()+"[5m])) / sum(rate(omega_storage_group_commit_duration_seconds_count"+s()+"[5m]))","mean")],12,row)
row+=8
panel("Queue depth","short",[("sum by (scheduler) (omega_sched_queue_depth"+s()+")","{{scheduler}}")],0,row)
panel("Oldest queued job","s",[("max by (scheduler) (omega_sched_queue_oldest_age_seconds"+s()+")","{{scheduler}}")],12,row)
row+=8
panel("Scheduler busyness","percentunit",[("sum by (scheduler, kind) (omega_sched_busyness"+s()+")","{{scheduler}} {{kind}}")],0,row,desc="Fraction of wall time deciding, useful and wasted (decisions whose commit conflicted).")
panel("Claims by outcome","ops",[("sum by (code) (rate(omega_cell_claims_total"+s()+"[5m]))","{{code}}")],12,row)
row+=8
panel("Unplaceable tasks and retries","ops",[("sum by (scheduler) (rate(omega_sched_unplaceable_total"+s()+"[5m]))","unplaceable {{scheduler}}"),("sum by (scheduler) (rate(omega_sched_retries_total"+s()+"[5m]))","retries {{scheduler}}")],0,row)
panel("Node liveness","short",[("sum(omega_lifecycle_suspect"+s()+")","suspect"),("sum(omega_lifecycle_brake_held_back"+s()+")","held back by the brake")],12,row)
row+=8
panel("Connections","short",[("sum by (endpoint) (omega_transport_connections_active"+s()+")","active {{endpoint}}"),("sum(rate(omega_auth_handshakes_total"+s()+"[5m]))","handshakes/s")],0,row)
panel("Frames per second","ops",[("sum(rate(omega_transport_frames_received_total"+s()+"[1m]))","received"),("sum(rate(omega_transport_frames_sent_total"+s()+"[1m]))","sent"),("sum(rate(omega_server_requests_total"+s()+"[1m]))","requests")],12,row)
row+=8
panel("Journal throughput","Bps",[("sum(rate(omega_storage_bytes_total"+s()+"[1m]))","bytes/s"),("sum(rate(omega_storage_records_total"+s()+"[1m]))","records/s")],0,row)
panel("Process CPU and memory","short",[("sum(rate(dotnet_process_cpu_time_seconds_total"+s()+"[1m]))","CPU cores used"),("sum(dotnet_process_memory_working_set_bytes"+s()+") / 1073741824","working set GiB")],12,row)
row+=8
panel("GC","short",[("sum(rate(dotnet_gc_pause_time_seconds_total"+s()+"[1m]))","pause s/s"),("sum by (gc_heap_generation) (rate(dotnet_gc_collections_total"+s()+"[1m]))","collections/s {{gc_heap_generation}}")],0,row)
panel("Thread pool","short",[("sum(dotnet_thread_pool_thread_count_total"+s()+")","threads"),("sum(dotnet_thread_pool_queue_length_total"+s()+")","queued work items")],12,row)
dash={
 "__inputs":[{"name":"DS_PROMETHEUS","label":"Prometheus","type":"datasource","pluginId":"prometheus","pluginName":"Prometheus"}],
 "title":"Omega scheduler","uid":"omega-scheduler","schemaVersion":39,"version":1,"editable":True,
 "description":"Omega's meters scraped from omega serve --metrics-port PORT (docs/metrics.md). Every query is checked against a real scrape by MetricsScrapeTests.",
 "tags":["omega","scheduler"],"time":{"from":"now-30m","to":"now"},"refresh":"10s",
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Prometheus"},
   {"name":"instance","type":"query","label":"omega process","datasource":{"type":"prometheus","uid":"${datasource}"},
    "definition":'label_values(target_info{service_name="omega"}, instance)',
    "query":{"query":'label_values(target_info{service_name="omega"}, instance)',"refId":"instances"},
    "includeAll":True,"multi":True,"allValue":".*","refresh":2}
 ]},
 "panels":panels}
json.dump(dash,open('docs/grafana/omega.json','w'),indent=2)
print(len(panels))
