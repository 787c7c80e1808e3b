# SafetyNotebooks on an existing JupyterHub: add these lines to your jupyterhub_config.py.
# Build the image first (from the repository root):  docker build -f environment/Dockerfile -t safety-notebooks-hub .
# See docs/mentors/jupyterhub.md.
c = get_config()  # noqa: F821  (defined by JupyterHub when it loads this file)

IMAGE = "safety-notebooks-hub:latest"   # or your registry's copy, e.g. "registry.example.org/safety-notebooks-hub:2026-12"

# --- DockerSpawner (one machine) ---
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = IMAGE
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}   # each learner's ~/lessons survives restarts
c.DockerSpawner.remove = True
c.Spawner.default_url = "/lab/tree/lessons"
# Training in the lessons is CPU-bound: 2 cores and 4 GB per learner run every lesson (quick mode on 2 cores < 2 min each).
c.Spawner.cpu_limit = 2
c.Spawner.mem_limit = "4G"

# --- KubeSpawner (Zero to JupyterHub on Kubernetes): use instead of the DockerSpawner block, or in the Helm values as
#   singleuser: {image: {name: safety-notebooks-hub, tag: latest}, cpu: {limit: 2, guarantee: 1}, memory: {limit: 4G, guarantee: 2G},
#                defaultUrl: /lab/tree/lessons}
# c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
# c.KubeSpawner.image = IMAGE
# c.KubeSpawner.cpu_limit = 2
# c.KubeSpawner.mem_limit = "4G"
