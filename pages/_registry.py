"""The app's pages in navigation order: one row each (file, title, url path, icon, section).

app.py builds st.navigation from this list and the browser tests visit every row, so a new page
is added here once.
"""

PAGES = [
    ("pages/home.py", "The margin family", "", ":material/functions:", "Lessons"),
    ("pages/explainer.py", "Explainer: ArcFace step by step", "explainer", ":material/school:", "Lessons"),
    ("pages/target_logit.py", "Target logit vs angle", "target_logit", ":material/show_chart:", "Lessons"),
    ("pages/decision_margins.py", "Decision margins", "decision_margins", ":material/call_split:", "Lessons"),
    ("pages/toy_training.py", "Live training: toy data", "toy_training", ":material/scatter_plot:", "Training"),
    ("pages/mnist.py", "Live training: MNIST", "mnist", ":material/grid_on:", "Training"),
    ("pages/sweep.py", "Which s and m?", "sweep", ":material/grid_view:", "Training"),
    ("pages/table3.py", "Table 3: angle statistics", "table3", ":material/table_chart:", "Evidence"),
    ("pages/backend.py", "Training runs", "backend", ":material/dns:", "Full-scale"),
]
