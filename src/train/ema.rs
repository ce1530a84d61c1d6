//! The momentum teacher: `θ_t ← m θ_t + (1 - m) θ_s` over every parameter.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::params::replace_value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmaError {
    #[error("the teacher has {teacher} parameters, the student {student}")]
    Count { teacher: usize, student: usize },
    #[error("parameter {index}: teacher shape {teacher:?}, student shape {student:?}")]
    Shape {
        index: usize,
        teacher: Vec<usize>,
        student: Vec<usize>,
    },
}

/// Float parameters in visiting order, flattened, without autodiff.
#[derive(Default)]
struct Collect {
    values: Vec<(Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        self.values
            .push((value.dims().to_vec(), value.flatten::<1>(0, D - 1)));
    }
}

struct Blend {
    student: std::vec::IntoIter<(Vec<usize>, Tensor<1>)>,
    momentum: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((_, student)) = self.student.next() else {
            return param;
        };
        let (id, teacher, mapper) = param.consume();
        let dims = teacher.dims();
        let blended = teacher.clone().inner().mul_scalar(self.momentum)
            + student.reshape(dims).mul_scalar(1.0 - self.momentum);
        Param::from_mapped_value(id, replace_value(&teacher, blended), mapper)
    }
}

/// One EMA update of `teacher` towards `student` (same structure, e.g. the teacher made with
/// `student.valid()`); buffers such as the loss center are not part of it, as in DINO. Frozen parameters
/// (`weight_g` with `norm_last_layer`) are blended too, like `zip(student.parameters(), teacher.parameters())`.
pub fn ema_update<M: Module>(teacher: M, student: &M, momentum: f64) -> Result<M, EmaError> {
    let mut students = Collect::default();
    student.visit(&mut students);
    let mut teachers = Collect::default();
    teacher.visit(&mut teachers);
    if teachers.values.len() != students.values.len() {
        return Err(EmaError::Count {
            teacher: teachers.values.len(),
            student: students.values.len(),
        });
    }
    for (index, ((t, _), (s, _))) in teachers.values.iter().zip(&students.values).enumerate() {
        if t != s {
            return Err(EmaError::Shape {
                index,
                teacher: t.clone(),
                student: s.clone(),
            });
        }
    }
    let mut blend = Blend {
        student: students.values.into_iter(),
        momentum,
    };
    Ok(teacher.map(&mut blend))
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    use super::*;

    #[test]
    fn blends_every_parameter() {
        let device = Device::flex();
        let student = LinearConfig::new(3, 2).init(&device);
        let teacher = LinearConfig::new(3, 2).init(&device);
        let out = ema_update(teacher.clone(), &student, 0.25).unwrap();
        let expected =
            teacher.weight.val().mul_scalar(0.25) + student.weight.val().mul_scalar(0.75);
        let diff = (out.weight.val() - expected)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-7);
        let bias = out.bias.as_ref().map(|b| b.val());
        let expected = teacher
            .bias
            .as_ref()
            .map(|b| b.val().mul_scalar(0.25))
            .zip(student.bias.as_ref().map(|b| b.val().mul_scalar(0.75)))
            .map(|(a, b)| a + b);
        let diff = (bias.unwrap() - expected.unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-7);
    }

    #[test]
    fn structure_mismatches_are_errors() {
        let device = Device::flex();
        let student = LinearConfig::new(3, 2).init(&device);
        let teacher = LinearConfig::new(3, 4).init(&device);
        assert!(matches!(
            ema_update(teacher, &student, 0.9),
            Err(EmaError::Shape { index: 0, .. })
        ));
        let teacher = LinearConfig::new(3, 2).with_bias(false).init(&device);
        assert!(matches!(
            ema_update(teacher, &student, 0.9),
            Err(EmaError::Count {
                teacher: 1,
                student: 2
            })
        ));
    }
}
