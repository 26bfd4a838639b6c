import time
from test_deploy import *
def test_prof(run_copy):
    t=time.time()
    doc = deploy.deploy_run(run_copy, emit=lambda l: print(f"{time.time()-t:6.1f} {l}"), options=FAST)
    for r in doc["variants"]: print(r["name"], r["timings_s"])
    print(doc["timings_s"])
