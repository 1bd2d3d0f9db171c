"""The launch layer: from a validated experiment to scheduled training tasks, one pipeline for every path.

    checks.py    what is checked on the login node before anything is queued (the data, model sizes, GPUs)
    plan.py      what to do with each setting, from its run folder and the scheduler's view (a pure function)
    pipeline.py  check -> lock -> plan -> table -> hold the folders -> submit -> clear forced ones, write submitted.json
    slurm.py     Slurm probes (sinfo, squeue, sacct, scontrol), the profile as scheduler parameters
    submitit_arrays.py  the submitit path: held arrays through submitit's SlurmExecutor
    sbatch.py    the plain-sbatch path (slurm/array.sbatch), its tasks pinned at submission
    local.py     submitit's local executor, for a machine without Slurm
    tasks.py     the callables a task runs (TrainTask, TrainGroup): stop on SIGTERM, requeue on USR2
    setup.py     the profile's setup lines in a job, both paths: a failing one stops the task, recorded
    lock.py      one `ptblm submit` per experiment at a time
"""
