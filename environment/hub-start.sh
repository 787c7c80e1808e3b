#!/usr/bin/env bash
# Runs at every container start in the JupyterHub image (Docker Stacks' before-notebook.d hook): on a learner's
# first start, copy the learner editions into ~/lessons; later starts never overwrite the learner's work.
if [ ! -e "$HOME/lessons" ]; then
  mkdir -p "$HOME/lessons" && cp -rn /opt/lessons-template/. "$HOME/lessons/"
  echo "SafetyNotebooks: learner editions copied to ~/lessons"
fi
