"""Full-split loss in evaluation mode (BatchNorm uses its running statistics)."""
import torch
import torch.nn.functional as F


@torch.no_grad()
def split_loss(model, X: torch.Tensor, Y: torch.Tensor, chunk: int = 65536) -> float:
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, X.shape[0], chunk):
        logits, _ = model(X[i:i + chunk])
        total += F.cross_entropy(logits.float(), Y[i:i + chunk], reduction="sum").item()
    model.train(was_training)
    return total / X.shape[0]
